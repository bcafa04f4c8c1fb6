"""minmax observer qparams vs torch.ao.quantization (quint8, per_*_affine, quant range 0..255)."""
import torch
from hypothesis import given, settings, strategies as st
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from calibration.observers import make_observer
from ptq import QuantSpec

SPEC8 = QuantSpec(bits=8, symmetric=False, include_zero=True)


def batches(seed, shape, n=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * (0.1 + 3 * torch.rand((), generator=g)) + torch.randn((), generator=g)
            for _ in range(n)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), shape=st.lists(st.integers(1, 6), min_size=1, max_size=3))
def test_minmax_per_tensor_matches_torch_ao(seed, shape):
    ref = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs = make_observer("minmax")
    for x in batches(seed, shape):
        ref(x)
        obs.update(x)
    r_scale, r_zero = ref.calculate_qparams()
    scale, zero = obs.qparams(SPEC8)
    assert scale.shape == zero.shape == (1, 1)
    torch.testing.assert_close(scale.reshape(-1), r_scale.float(), rtol=1e-6, atol=0)
    assert torch.equal(zero.reshape(-1).long(), r_zero.long())


@settings(max_examples=30, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**16), shape=st.lists(st.integers(1, 6), min_size=2, max_size=3))
def test_minmax_per_channel_matches_torch_ao(data, seed, shape):
    # (torch.ao's per-channel observer needs at least 2 dimensions)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    ref = PerChannelMinMaxObserver(ch_axis=axis % len(shape), dtype=torch.quint8, qscheme=torch.per_channel_affine)
    obs = make_observer("minmax", axis=axis)
    for x in batches(seed, shape):
        ref(x)
        obs.update(x)
    r_scale, r_zero = ref.calculate_qparams()
    scale, zero = obs.qparams(SPEC8)
    assert scale.shape == (shape[axis], 1)
    torch.testing.assert_close(scale.reshape(-1), r_scale.float(), rtol=1e-6, atol=0)
    assert torch.equal(zero.reshape(-1).long(), r_zero.long())
