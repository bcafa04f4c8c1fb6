"""What each observer computes: percentile accuracy, mse clipping, moving average, minmax."""
import pytest
import torch

from calibration.observers import make_observer
from ptq import QuantSpec, fake_quantize, minmax_qparams


def test_percentile_matches_torch_quantile():
    torch.manual_seed(0)
    x = torch.randn(1_000_000)
    obs = make_observer("percentile", percentile=99.9)
    for chunk in x.split(100_000):
        obs.update(chunk)
    ref = float(torch.quantile(x.abs(), 0.999))
    assert float(obs.threshold) == pytest.approx(ref, rel=0.01)
    lo, hi = obs.range()
    assert float(hi) == pytest.approx(ref, rel=0.01) and float(lo) == pytest.approx(-ref, rel=0.01)


def test_percentile_per_channel_and_widening_stream():
    torch.manual_seed(1)
    scales = torch.tensor([0.5, 1.0, 4.0])
    batches = [torch.randn(20_000, 3) * scales * (1 + i) for i in range(4)]  # bound grows every batch
    obs = make_observer("percentile", axis=-1, percentile=99.0)
    for b in batches:
        obs.update(b)
    ref = torch.quantile(torch.cat(batches).abs(), 0.99, dim=0)
    torch.testing.assert_close(obs.threshold, ref, rtol=0.01, atol=0)


def test_percentile_range_stays_ordered_for_one_sided_data():
    obs = make_observer("percentile", axis=0)
    obs.update(torch.tensor([[5.0, 5.0, 5.0], [2.0, 3.0, 4.0], [-4.0, -3.0, -2.0]]))
    lo, hi = obs.range()
    assert (lo <= hi).all()
    assert float(lo[0]) == float(hi[0]) == 5.0


def heavy_tailed(n=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    x[:20] = torch.tensor([40.0, -35.0] * 10)
    return x


@pytest.mark.parametrize("symmetric", [False, True])
def test_mse_range_beats_minmax_at_4_bits(symmetric):
    x = heavy_tailed()
    spec = QuantSpec(bits=4, symmetric=symmetric, granularity="tensor")
    obs = make_observer("mse")
    for chunk in x.split(50_000):
        obs.update(chunk)
    w = x.reshape(1, -1)
    err_mse = float((fake_quantize(w, spec, *obs.qparams(spec)) - w).pow(2).mean())
    err_mm = float((fake_quantize(w, spec, *minmax_qparams(w, spec)) - w).pow(2).mean())
    assert err_mse < 0.5 * err_mm
    lo, hi = obs.range(spec)
    assert -40 < float(lo) and float(hi) < 40
    lo8, hi8 = obs.range()  # default spec: 8-bit asymmetric
    assert float(lo8) <= float(lo) and float(hi8) >= float(hi)


def test_mse_never_widens_beyond_minmax_and_keeps_clean_data_close():
    torch.manual_seed(2)
    x = torch.rand(4, 10_000) * 2 - 1
    obs = make_observer("mse", axis=0)
    obs.update(x)
    lo, hi = obs.range(QuantSpec(bits=8))
    mm_lo, mm_hi = x.amin(dim=1), x.amax(dim=1)
    assert (lo >= mm_lo).all() and (hi <= mm_hi).all()
    assert (hi >= 0.95 * mm_hi).all()  # uniform data: 8 bits clip almost nothing


def test_moving_average_follows_torch_ao_formula():
    obs = make_observer("moving-average", momentum=0.5)
    obs.update(torch.tensor([-2.0, 2.0]))
    obs.update(torch.tensor([-4.0, 6.0]))
    lo, hi = obs.range()
    assert float(lo) == -3.0 and float(hi) == 4.0
    from torch.ao.quantization import MovingAverageMinMaxObserver
    ref = MovingAverageMinMaxObserver(averaging_constant=0.5)
    ref(torch.tensor([-2.0, 2.0]))
    ref(torch.tensor([-4.0, 6.0]))
    assert float(ref.min_val) == -3.0 and float(ref.max_val) == 4.0


def test_minmax_per_channel_on_last_axis():
    x = torch.randn(3, 4, 6)
    obs = make_observer("minmax", axis=-1)
    obs.update(x[:2])
    obs.update(x[2:])
    lo, hi = obs.range()
    assert torch.equal(lo, x.amin(dim=(0, 1))) and torch.equal(hi, x.amax(dim=(0, 1)))


@pytest.mark.parametrize("axis", [-1, None])
def test_rms_per_channel_is_the_root_mean_square_and_keeps_the_max(axis):
    torch.manual_seed(0)
    a, b = torch.randn(2, 16, 8) * 3, torch.randn(3, 5, 8)
    vals = torch.cat([a.reshape(-1, 8), b.reshape(-1, 8)]).t()  # [channels, values]
    if axis is None:
        vals = vals.reshape(1, -1)
    obs = make_observer("rms-per-channel", axis=axis)
    obs.update(a)
    obs.update(b)
    torch.testing.assert_close(obs.rms, vals.pow(2).mean(dim=1).sqrt().reshape(obs.rms.shape))
    assert torch.equal(obs.absmax, vals.abs().amax(dim=1).reshape(obs.absmax.shape))
    lo, hi = obs.range()  # the range is the absmax one; the RMS is a magnitude, not a range
    assert torch.equal(hi, obs.absmax) and torch.equal(lo, -obs.absmax)
    left, right = make_observer("rms-per-channel", axis=axis), make_observer("rms-per-channel", axis=axis)
    left.update(a)
    right.update(b)
    left.merge(right)
    torch.testing.assert_close(left.rms, obs.rms, rtol=1e-6, atol=0)
    assert torch.equal(left.absmax, obs.absmax) and int(left.count) == int(obs.count)


def test_rms_ignores_a_rare_spike_that_sets_the_max():
    x = torch.ones(1000, 4)
    x[7, 2] = 1000.0  # one massive-activation token in channel 2
    obs = make_observer("rms-per-channel")
    obs.update(x)
    assert float(obs.absmax[2]) == 1000.0 and float(obs.absmax[0]) == 1.0
    assert float(obs.rms[2]) == pytest.approx((999 + 1e6) ** 0.5 / 1000 ** 0.5) and float(obs.rms[0]) == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_absmax_over_the_last_axis_equals_the_general_path(dtype):
    """A linear layer's input ``[B, S, C]`` is reduced in place (no transposed copy): the same absmax and count
    as the general path, and the same error for a NaN or an inf."""
    from calibration.observers.base import Observer

    g = torch.Generator().manual_seed(0)
    xs = [(torch.randn(2, 16, 24, generator=g) * 5).to(dtype) for _ in range(3)]
    xs[1][1, 3, 7] = -400.0
    fast, general = make_observer("absmax-per-channel", axis=-1), make_observer("absmax-per-channel", axis=-1)
    for x in xs:
        fast.update(x)
        Observer.update(general, x)
    assert torch.equal(fast.absmax, general.absmax) and int(fast.count) == int(general.count) == 96
    assert float(fast.absmax[7]) == 400.0 and fast.absmax.dtype == torch.float32
    for bad, word in ((float("nan"), "NaN"), (float("-inf"), "inf")):
        x = xs[0].clone()
        x[0, 0, 0] = bad
        with pytest.raises(ValueError, match=f"observer input contains {word}"):
            fast.update(x)
    with pytest.raises(ValueError, match="expected 24 channels"):
        fast.update(torch.ones(2, 5))
