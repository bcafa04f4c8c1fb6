"""ptq.qparams.mse_qparams: GPTQ-reference range shrinking (find_params(mse=True))."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ptq import QuantSpec, fake_quantize, minmax_qparams, mse_qparams
from ptq.qparams import grouped_view


def unit_errors(x, spec, scale, zero, norm):
    err = (fake_quantize(x, spec, scale, zero) - x).abs().pow(norm)
    return grouped_view(err, spec).sum(dim=-1)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16), rows=st.integers(1, 6), groups=st.integers(1, 3),
    bits=st.integers(2, 8), symmetric=st.booleans(), include_zero=st.booleans(),
    granularity=st.sampled_from(["tensor", "channel", "group"]), norm=st.sampled_from([2.0, 2.4]),
)
def test_mse_never_worse_than_minmax(seed, rows, groups, bits, symmetric, include_zero, granularity, norm):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 8 * groups, generator=g) * torch.rand(rows, 1, generator=g) * 3 + 0.5
    spec = QuantSpec(bits=bits, symmetric=symmetric, granularity=granularity,
                     group_size=8 if granularity == "group" else None, include_zero=include_zero)
    e_mse = unit_errors(x, spec, *mse_qparams(x, spec, norm=norm), norm)
    e_mm = unit_errors(x, spec, *minmax_qparams(x, spec), norm)
    assert (e_mse <= e_mm * (1 + 1e-5) + 1e-12).all()


def test_equals_minmax_when_values_lie_on_the_minmax_grid():
    spec = QuantSpec(bits=4)
    k = torch.arange(16.0).repeat(4)
    x = torch.stack([0.1 * (k[torch.randperm(64)] - 5), 0.25 * (k[torch.randperm(64)] - 3)])
    s, z = mse_qparams(x, spec)
    s0, z0 = minmax_qparams(x, spec)
    assert torch.equal(s, s0) and torch.equal(z, z0)


def test_clips_a_single_outlier():
    torch.manual_seed(0)
    x = torch.rand(1, 4096) * 2 - 1
    x[0, 0] = 3.0
    spec = QuantSpec(bits=3)
    s, z = mse_qparams(x, spec)
    s0, _ = minmax_qparams(x, spec)
    assert float(s) < 0.9 * float(s0)
    assert float(unit_errors(x, spec, s, z, 2.4)) < float(unit_errors(x, spec, s0, minmax_qparams(x, spec)[1], 2.4))


@pytest.mark.parametrize("granularity,group_size,shape", [
    ("tensor", None, (1, 1)), ("channel", None, (6, 1)), ("group", 16, (6, 4)),
])
@pytest.mark.parametrize("symmetric", [False, True])
def test_shapes_and_symmetric(granularity, group_size, shape, symmetric):
    torch.manual_seed(1)
    x = torch.randn(6, 64)
    spec = QuantSpec(bits=4, symmetric=symmetric, granularity=granularity, group_size=group_size)
    s, z = mse_qparams(x, spec)
    s0, z0 = minmax_qparams(x, spec)
    assert s.shape == z.shape == s0.shape == shape
    assert s.dtype == z.dtype == torch.float32
    assert (s > 0).all() and (s <= s0 * (1 + 1e-6)).all()
    if symmetric:
        assert (z == (spec.maxq + 1) / 2).all()


def test_constant_rows_and_bad_arguments():
    x = torch.zeros(3, 8)
    x[1] = 2.0
    s, z = mse_qparams(x, QuantSpec(bits=4))
    assert torch.isfinite(s).all() and (s > 0).all()
    with pytest.raises(ValueError, match="NaN"):
        mse_qparams(torch.tensor([[1.0, float("nan")]]), QuantSpec(bits=4))
    for kw, msg in [({"grid": 0}, "grid"), ({"maxshrink": 0.0}, "maxshrink"), ({"norm": 0}, "norm")]:
        with pytest.raises(ValueError, match=msg):
            mse_qparams(x, QuantSpec(bits=4), **kw)


def test_column_weight_keeps_an_outlier_in_an_important_column():
    torch.manual_seed(0)
    x = torch.rand(1, 4096) * 2 - 1
    x[0, 0] = 3.0  # the outlier a plain search clips (test above)
    spec = QuantSpec(bits=3)
    plain, _ = mse_qparams(x, spec)
    weight = torch.ones(4096)
    weight[0] = 1e4  # the layer's input is large on column 0: its error counts most
    kept, _ = mse_qparams(x, spec, column_weight=weight)
    s0, _ = minmax_qparams(x, spec)
    assert float(plain) < 0.9 * float(s0) and float(kept) > 0.95 * float(s0)
    uniform = mse_qparams(x, spec, column_weight=torch.full((4096,), 7.0))
    assert all(torch.equal(a, b) for a, b in zip(uniform, mse_qparams(x, spec)))  # a constant weight changes nothing


@pytest.mark.parametrize("granularity,group_size", [("tensor", None), ("channel", None), ("group", 8)])
def test_column_weight_shapes_and_bad_weights(granularity, group_size):
    spec = QuantSpec(bits=4, granularity=granularity, group_size=group_size)
    x = torch.randn(5, 32)
    s, z = mse_qparams(x, spec, column_weight=torch.rand(32))
    s0, z0 = minmax_qparams(x, spec)
    assert s.shape == s0.shape and z.shape == z0.shape
    for bad in (torch.rand(31), -torch.rand(32)):
        with pytest.raises(ValueError, match="column_weight must be non-negative of shape \\[32\\]"):
            mse_qparams(x, spec, column_weight=bad)
