"""Quantization parameters: known values, degenerate ranges, bad inputs, torch.ao parity."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from ptq import QuantSpec, compute_qparams, dequantize, minmax_qparams, quantize, reduce_minmax
from ptq.qparams import grouped_view

T = torch.tensor


def roundtrip(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    scale, zero = minmax_qparams(x, spec)
    return dequantize(quantize(x, scale, zero, spec), scale, zero, spec)


# ---------------------------------------------------------------- known values


def test_known_2bit_asymmetric():
    spec = QuantSpec(bits=2, granularity="tensor")
    scale, zero = minmax_qparams(T([[-1.0, 0.0, 3.0]]), spec)
    assert scale.dtype == zero.dtype == torch.float32
    assert scale.shape == zero.shape == (1, 1)
    assert scale.item() == pytest.approx(4 / 3, rel=1e-7)
    assert zero.item() == 1.0  # round(1 / (4/3)) = round(0.75)
    q = quantize(T([[-1.0, 0.0, 3.0]]), scale, zero, spec)
    assert q.tolist() == [[0, 1, 3]]
    assert dequantize(q, scale, zero, spec)[0].tolist() == pytest.approx([-4 / 3, 0.0, 8 / 3])


def test_known_8bit_asymmetric():
    scale, zero = minmax_qparams(T([[-1.0, 0.0, 3.0]]), QuantSpec(bits=8, granularity="tensor"))
    assert scale.item() == pytest.approx(4 / 255, rel=1e-7)
    assert zero.item() == 64.0  # round(255 / 4) = round(63.75)


def test_known_range_0_to_255_gives_unit_scale():
    scale, zero = minmax_qparams(T([[0.0, 17.0, 255.0]]), QuantSpec(bits=8, granularity="tensor"))
    assert (scale.item(), zero.item()) == (1.0, 0.0)


@pytest.mark.parametrize("bits", range(2, 9))
def test_known_symmetric_scale_and_zero(bits):
    # docstring convention: scale = 2 * absmax / maxq, zero = (maxq + 1) / 2
    maxq = 2**bits - 1
    x = T([[-2.0, 1.0, 0.5], [0.25, -0.5, 3.0]])
    spec = QuantSpec(bits=bits, symmetric=True)
    scale, zero = minmax_qparams(x, spec)
    assert scale.flatten().tolist() == pytest.approx([2 * 2.0 / maxq, 2 * 3.0 / maxq], rel=1e-7)
    assert zero.flatten().tolist() == [(maxq + 1) / 2] * 2


def test_known_4bit_symmetric_codes():
    spec = QuantSpec(bits=4, symmetric=True, granularity="tensor")
    x = T([[-2.0, 1.0, 0.0, -1.0]])
    scale, zero = minmax_qparams(x, spec)
    assert scale.item() == pytest.approx(4 / 15)
    assert zero.item() == 8.0
    q = quantize(x, scale, zero, spec)
    # 1 / (4/15) = 3.75 -> 4 -> 12;  0 -> 8;  -1 -> -3.75 -> -4 -> 4
    assert q[0, 1:].tolist() == [12, 8, 4]
    # the absmax element sits on a tie (-7.5 steps): either neighbour code, error exactly scale / 2
    assert q[0, 0].item() in (0, 1)
    err = (dequantize(q, scale, zero, spec) - x).abs()[0, 0].item()
    assert err == pytest.approx(scale.item() / 2, rel=1e-5)


def test_known_per_channel_and_group_values():
    x = T([[-1.0, 0.0, 3.0, 5.0], [2.0, 4.0, -6.0, -2.0]])
    scale, zero = minmax_qparams(x, QuantSpec(bits=2))
    assert scale.shape == (2, 1)
    assert scale.flatten().tolist() == pytest.approx([6 / 3, 10 / 3])
    assert zero.flatten().tolist() == [0.0, 2.0]  # round(0.5) = 0 (half to even), round(1.8) = 2
    scale, zero = minmax_qparams(x, QuantSpec(bits=2, granularity="group", group_size=2))
    assert scale.shape == zero.shape == (2, 2)
    # groups: [-1, 0], [3, 5] -> [0, 5], [2, 4] -> [0, 4], [-6, -2] -> [-6, 0]
    assert scale.flatten().tolist() == pytest.approx([1 / 3, 5 / 3, 4 / 3, 2.0])
    assert zero.flatten().tolist() == [3.0, 0.0, 0.0, 3.0]


def test_include_zero_false_uses_the_data_range():
    spec = QuantSpec(bits=2, granularity="tensor", include_zero=False)
    scale, zero = minmax_qparams(T([[-1.0, 0.5, 2.0]]), spec)
    assert scale.item() == pytest.approx(1.0)
    assert zero.item() == 1.0


def test_include_zero_false_range_excluding_zero_is_covered():
    for x in (T([[10.0, 10.5, 11.0]]), T([[-11.0, -10.5, -10.0]])):
        spec = QuantSpec(bits=2, granularity="tensor", include_zero=False)
        scale, _ = minmax_qparams(x, spec)
        assert (roundtrip(x, spec) - x).abs().max() <= scale.item() / 2 * (1 + 1e-5)


# ---------------------------------------------------------------- degenerate ranges


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("symmetric", [False, True])
def test_all_zero_tensor_has_finite_scale_and_exact_zeros(bits, symmetric):
    maxq = 2**bits - 1
    for granularity, gs in (("tensor", None), ("channel", None), ("group", 4)):
        spec = QuantSpec(bits=bits, symmetric=symmetric, granularity=granularity, group_size=gs)
        x = torch.zeros(3, 8)
        scale, zero = minmax_qparams(x, spec)
        assert torch.isfinite(scale).all() and (scale > 0).all()
        # range [0, 0] becomes [-1, 1] as in the GPTQ reference
        assert torch.allclose(scale, torch.full_like(scale, 2 / maxq))
        if symmetric:
            assert (zero == (maxq + 1) / 2).all()
        else:  # round(1 / fl(2 / maxq)): maxq / 2 rounded either way depending on float32 rounding of the scale
            assert ((zero == (maxq + 1) / 2) | (zero == (maxq - 1) / 2)).all()
        assert torch.equal(roundtrip(x, spec), x)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("c", [3.0, -3.0, 1.0, -1.0, 0.5, -0.75, 1024.0])
def test_constant_row_asymmetric_exact(bits, c):
    spec = QuantSpec(bits=bits)
    x = torch.full((2, 6), c)
    x[1] = 0.0
    scale, zero = minmax_qparams(x, spec)
    assert torch.isfinite(scale).all() and (scale > 0).all()
    assert torch.equal(roundtrip(x, spec), x)


@given(c=st.floats(1e-3, 1e3), neg=st.booleans(), bits=st.integers(2, 8), symmetric=st.booleans())
@settings(max_examples=100, deadline=None)
def test_constant_row_finite_scale_and_close_reconstruction(c, neg, bits, symmetric):
    c = -c if neg else c
    x = torch.full((1, 5), c)
    spec = QuantSpec(bits=bits, symmetric=symmetric)
    scale, zero = minmax_qparams(x, spec)
    assert torch.isfinite(scale).all() and (scale > 0).all() and torch.isfinite(zero).all()
    r = roundtrip(x, spec)
    if symmetric:
        # the reference symmetric grid tops out at (maxq - 1) / maxq * absmax: error at most scale / 2
        assert (r - x).abs().max() <= scale.item() / 2 * (1 + 1e-5) + abs(c) * 1e-6
    else:
        # c lands on the end code: c = scale * maxq up to float32 rounding of the scale
        assert torch.allclose(r, torch.full_like(x, x[0, 0].item()), rtol=3e-7, atol=0)


def test_constant_row_reconstructed_bit_exactly():
    spec = QuantSpec(bits=2)
    x = torch.full((1, 4), 0.1)
    assert torch.equal(roundtrip(x, spec), x)


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("bad, word", [(float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "inf")])
@pytest.mark.parametrize("granularity, gs", [("tensor", None), ("channel", None), ("group", 2)])
def test_nan_or_inf_input_rejected(bad, word, granularity, gs):
    x = torch.ones(2, 4)
    x[1, 2] = bad
    spec = QuantSpec(granularity=granularity, group_size=gs)
    with pytest.raises(ValueError, match=rf"contains {word}; quantization needs finite values"):
        minmax_qparams(x, spec)
    with pytest.raises(ValueError, match=word):
        reduce_minmax(x.bfloat16(), spec)


def test_nan_or_inf_range_rejected_by_compute_qparams():
    with pytest.raises(ValueError, match="range minimum contains NaN"):
        compute_qparams(T([float("nan")]), T([1.0]), QuantSpec())
    with pytest.raises(ValueError, match="range maximum contains inf"):
        compute_qparams(T([0.0]), T([float("inf")]), QuantSpec())


def test_inverted_range_rejected():
    with pytest.raises(ValueError, match="range minimum is larger than its maximum"):
        compute_qparams(T([2.0]), T([1.0]), QuantSpec())


@pytest.mark.parametrize("shape", [(8,), (2, 2, 4), ()])
def test_grouped_view_rejects_non_2d(shape):
    with pytest.raises(ValueError, match=r"expected a 2-D \[out_features, in_features\] tensor, got shape"):
        grouped_view(torch.zeros(shape), QuantSpec(granularity="group", group_size=4))
    with pytest.raises(ValueError, match="expected a 2-D"):
        minmax_qparams(torch.zeros(shape), QuantSpec())


def test_group_size_not_dividing_input_dimension_rejected():
    spec = QuantSpec(granularity="group", group_size=128)
    for fn in (lambda x: grouped_view(x, spec), lambda x: minmax_qparams(x, spec)):
        with pytest.raises(ValueError, match=r"group_size 128 does not divide the input dimension \(576\); "
                                             r"group sizes that divide it: 8, 9, 12, 16, 18, 24, 32, 36, 48, 64"):
            fn(torch.zeros(2, 576))


def test_grouped_view_shapes():
    x = torch.arange(24.0).reshape(2, 12)
    assert grouped_view(x, QuantSpec(granularity="tensor")).shape == (1, 24)
    assert grouped_view(x, QuantSpec(granularity="channel")).shape == (2, 12)
    v = grouped_view(x, QuantSpec(granularity="group", group_size=4))
    assert v.shape == (2, 3, 4)
    assert v[1, 2].tolist() == [20.0, 21.0, 22.0, 23.0]  # consecutive input columns of one row


# ---------------------------------------------------------------- parity with torch.ao observers


def _ao_data(seed: int, rows: int, cols: int, log_scale: float, offset: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    row_scale = torch.exp(torch.randn(rows, 1, generator=g)) * 10**log_scale
    return (torch.randn(rows, cols, generator=g) + offset) * row_scale


ao_cases = dict(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 12), cols=st.integers(2, 40),
                log_scale=st.floats(-2, 2), offset=st.sampled_from([0.0, 3.0, -3.0, 0.5]))


@given(**ao_cases)
@settings(max_examples=60, deadline=None)
def test_8bit_per_tensor_matches_torch_ao_minmax_observer_zero_equal(seed, rows, cols, log_scale, offset):
    x = _ao_data(seed, rows, cols, log_scale, offset)
    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(x)
    ao_scale, ao_zero = obs.calculate_qparams()
    scale, zero = minmax_qparams(x, QuantSpec(bits=8, granularity="tensor", include_zero=True))
    assert scale.reshape(-1).tolist() == pytest.approx(ao_scale.reshape(-1).tolist(), rel=1e-6)
    assert zero.reshape(-1).long().tolist() == ao_zero.reshape(-1).long().tolist()


@given(**ao_cases)
@settings(max_examples=60, deadline=None)
def test_8bit_per_channel_matches_torch_ao_per_channel_observer_zero_equal(seed, rows, cols, log_scale, offset):
    x = _ao_data(seed, rows, cols, log_scale, offset)
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine)
    obs(x)
    ao_scale, ao_zero = obs.calculate_qparams()
    scale, zero = minmax_qparams(x, QuantSpec(bits=8, granularity="channel", include_zero=True))
    assert scale.shape == (rows, 1)
    assert scale.reshape(-1).tolist() == pytest.approx(ao_scale.reshape(-1).tolist(), rel=1e-6)
    assert zero.reshape(-1).long().tolist() == ao_zero.reshape(-1).long().tolist()


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
def test_8bit_codes_match_torch_quantize_per_channel():
    x = _ao_data(0, 6, 33, 0.0, 0.5)
    spec = QuantSpec(bits=8)
    scale, zero = minmax_qparams(x, spec)
    ref = torch.quantize_per_channel(x, scale.reshape(-1).double(), zero.reshape(-1).long(), 0, torch.quint8)
    assert torch.equal(quantize(x, scale, zero, spec), ref.int_repr())
    assert math.isclose(float((dequantize(quantize(x, scale, zero, spec), scale, zero, spec)
                               - ref.dequantize()).abs().max()), 0.0, abs_tol=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_float16_scales_are_float16_values_and_grid_still_covers(symmetric):
    torch.manual_seed(0)
    x = torch.randn(16, 64) * 0.03
    spec = QuantSpec(bits=4, symmetric=symmetric, granularity="group", group_size=32, scale_dtype="float16")
    scale, zero = minmax_qparams(x, spec)
    assert torch.equal(scale, scale.half().float())
    ref, _ = minmax_qparams(x, QuantSpec(bits=4, symmetric=symmetric, granularity="group", group_size=32))
    assert torch.allclose(scale, ref, rtol=1e-3)
    with pytest.raises(ValueError, match="scale_dtype must be float32 or float16"):
        QuantSpec(scale_dtype="bfloat16")
