"""quantize / dequantize / fake_quantize: error bound, code range, dtypes, bad inputs."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ptq import QuantSpec, dequantize, fake_quantize, minmax_qparams, quantize
from ptq.quantize import expand_qparam

EPS32 = torch.finfo(torch.float32).eps


@st.composite
def cases(draw, include_zero=st.just(True)):
    """A spec (any granularity, symmetric or not, 2-8 bits) and a matching 2-D float32 tensor."""
    bits = draw(st.integers(2, 8))
    symmetric = draw(st.booleans())
    granularity = draw(st.sampled_from(["tensor", "channel", "group"]))
    rows = draw(st.integers(1, 6))
    if granularity == "group":
        group_size = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 32]))
        cols = group_size * draw(st.integers(1, 5))
    else:
        group_size = None
        cols = draw(st.integers(1, 40))
    spec = QuantSpec(bits=bits, symmetric=symmetric, granularity=granularity, group_size=group_size,
                     include_zero=draw(include_zero))
    seed = draw(st.integers(0, 2**31 - 1))
    log_scale = draw(st.floats(-3, 3))
    offset = draw(st.sampled_from([0.0, 0.0, 2.0, -2.0]))
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, cols, generator=g) + offset) * 10**log_scale
    special = draw(st.sampled_from(["none", "none", "zero_row", "const_row", "zeros"]))
    if special == "zero_row":
        x[0] = 0.0
    elif special == "const_row":
        x[-1] = x[-1, 0].item()
    elif special == "zeros":
        x.zero_()
    return spec, x


def _tol(scale: torch.Tensor, x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """scale / 2 plus float32 rounding of x / scale and scale * (q - zero)."""
    return scale / 2 * (1 + 1e-5) + 4 * EPS32 * (x.abs() + scale * spec.maxq)


@given(cases())
@settings(max_examples=100, deadline=None)
def test_minmax_roundtrip_error_at_most_half_scale(case):
    # with include_zero the min-max grid covers the whole tensor (the symmetric reference grid
    # misses +absmax by exactly scale / 2), so every element is within scale / 2
    spec, x = case
    scale, zero = minmax_qparams(x, spec)
    assert scale.dtype == zero.dtype == torch.float32
    assert torch.isfinite(scale).all() and (scale > 0).all()
    assert ((zero >= 0) & (zero <= spec.maxq) & (zero == zero.round())).all()
    q = quantize(x, scale, zero, spec)
    assert q.dtype == torch.uint8 and q.shape == x.shape
    assert int(q.max()) <= spec.maxq
    s = expand_qparam(scale, x.shape, spec)
    err = (dequantize(q, scale, zero, spec) - x).abs()
    assert (err <= _tol(s, x, spec)).all()


@given(cases(include_zero=st.booleans()), st.integers(0, 2**31 - 1))
@settings(max_examples=100, deadline=None)
def test_values_inside_representable_range_within_half_scale(case, seed):
    # any x inside [scale * (0 - zero), scale * (maxq - zero)] comes back within scale / 2
    spec, x = case
    scale, zero = minmax_qparams(x, spec)
    s = expand_qparam(scale, x.shape, spec)
    z = expand_qparam(zero, x.shape, spec)
    lo, hi = s * (0 - z), s * (spec.maxq - z)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
    y = lo + u * (hi - lo)
    y[..., 0] = lo[..., 0]
    y[..., -1] = hi[..., -1]
    q = quantize(y, scale, zero, spec)
    assert (dequantize(q, scale, zero, spec) - y).abs().le(_tol(s, y, spec)).all()


@given(cases(include_zero=st.booleans()), st.floats(0.01, 100), st.integers(0, 2**31 - 1))
@settings(max_examples=80, deadline=None)
def test_codes_clamped_to_range_for_any_input(case, blow_up, seed):
    # qparams of one tensor applied to another (much larger) tensor: codes still in [0, maxq]
    spec, x = case
    scale, zero = minmax_qparams(x, spec)
    y = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * blow_up * (x.abs().max() + 1)
    q = quantize(y, scale, zero, spec)
    assert q.dtype == torch.uint8
    assert int(q.min()) >= 0 and int(q.max()) <= spec.maxq


@given(cases(include_zero=st.booleans()))
@settings(max_examples=80, deadline=None)
def test_fake_quantize_equals_dequantize_of_quantize(case):
    spec, x = case
    scale, zero = minmax_qparams(x, spec)
    expected = dequantize(quantize(x, scale, zero, spec), scale, zero, spec)
    assert torch.equal(fake_quantize(x, spec), expected)
    assert torch.equal(fake_quantize(x, spec, scale, zero), expected)


@given(cases(include_zero=st.booleans()))
@settings(max_examples=80, deadline=None)
def test_same_codes_for_float32_float16_bfloat16(case):
    spec, x = case
    # values representable in bfloat16 and float16 alike: bfloat16 mantissa, float16 normal exponent range
    xb = (x.clamp(-6e4, 6e4)).bfloat16()
    xb = torch.where(xb.float().abs() < 2**-14, torch.zeros_like(xb), xb)
    x32, x16 = xb.float(), xb.half()
    assert torch.equal(x16.float(), x32) and torch.equal(xb.float(), x32)
    scale, zero = minmax_qparams(x32, spec)
    q = quantize(x32, scale, zero, spec)
    x_hat = dequantize(q, scale, zero, spec)
    for xd in (x16, xb):
        s_d, z_d = minmax_qparams(xd, spec)
        assert s_d.dtype == z_d.dtype == torch.float32
        assert torch.equal(s_d, scale) and torch.equal(z_d, zero)
        assert torch.equal(quantize(xd, s_d, z_d, spec), q)
        fq = fake_quantize(xd, spec)
        assert fq.dtype == xd.dtype
        assert torch.equal(fq, x_hat.to(xd.dtype))
        assert torch.equal(dequantize(q, s_d, z_d, spec, dtype=xd.dtype), x_hat.to(xd.dtype))
    # half-precision scales give the same codes as float32 scales
    assert torch.equal(quantize(x32, scale, zero, spec), quantize(x16, scale.double(), zero.double(), spec))


def test_dequantize_dtype_default_float32():
    spec = QuantSpec(bits=4)
    x = torch.randn(3, 8)
    scale, zero = minmax_qparams(x, spec)
    q = quantize(x, scale, zero, spec)
    assert dequantize(q, scale, zero, spec).dtype == torch.float32
    assert dequantize(q, scale, zero, spec, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_group_qparams_apply_to_consecutive_columns():
    spec = QuantSpec(bits=2, granularity="group", group_size=2)
    scale = torch.tensor([[1.0, 10.0]])
    zero = torch.tensor([[0.0, 1.0]])
    q = torch.tensor([[0, 3, 0, 3]], dtype=torch.uint8)
    assert dequantize(q, scale, zero, spec).tolist() == [[0.0, 3.0, -10.0, 20.0]]
    assert quantize(torch.tensor([[0.0, 3.0, -10.0, 20.0]]), scale, zero, spec).tolist() == [[0, 3, 0, 3]]


@pytest.mark.parametrize("bad, word", [(float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_nan_or_inf_rejected_by_quantize_and_fake_quantize(bad, word, dtype):
    spec = QuantSpec(bits=4)
    x = torch.ones(2, 4, dtype=dtype)
    scale, zero = minmax_qparams(x, spec)
    x[0, 1] = bad
    with pytest.raises(ValueError, match=rf"the tensor to quantize contains {word}"):
        quantize(x, scale, zero, spec)
    with pytest.raises(ValueError, match=word):
        fake_quantize(x, spec)
    with pytest.raises(ValueError, match=word):
        fake_quantize(x, spec, scale, zero)


@pytest.mark.parametrize("shape", [(8,), (2, 2, 4)])
def test_quantize_rejects_non_2d(shape):
    spec = QuantSpec(bits=4, granularity="tensor")
    one = torch.ones(1, 1)
    with pytest.raises(ValueError, match=r"expected a 2-D \[out_features, in_features\] tensor"):
        quantize(torch.zeros(shape), one, one, spec)
    with pytest.raises(ValueError, match="expected a 2-D"):
        fake_quantize(torch.zeros(shape), spec)


def test_quantize_rejects_group_size_not_dividing_input_dimension():
    spec = QuantSpec(bits=4, granularity="group", group_size=128)
    x = torch.zeros(2, 1536 + 64)
    one = torch.ones(2, 1)
    with pytest.raises(ValueError, match=r"group_size 128 does not divide the input dimension \(1600\); "
                                         r"group sizes that divide it: 8, 10, 16, 20, 25, 32, 40, 50, 64, 80"):
        quantize(x, one, one, spec)
    with pytest.raises(ValueError, match=r"does not divide the input dimension \(1600\)"):
        fake_quantize(x, spec)
