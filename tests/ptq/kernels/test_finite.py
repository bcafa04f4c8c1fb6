"""``all_finite``: the one-read check of calibration inputs agrees with ``torch.isfinite(x).all()``."""
import pytest
import torch

from ptq.kernels.finite import all_finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_agrees_with_isfinite_everywhere(dtype):
    x = torch.randn(3, 40, 24).to(dtype)
    assert all_finite(x)
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[2, 39, 23] = bad
        assert not all_finite(y) and not all_finite(y, rows=7)
    y = x.clone()
    y[0, 0, 0], y[1, 1, 1] = float("inf"), float("-inf")  # the sum is NaN
    assert not all_finite(y)


def test_a_sum_that_overflows_is_checked_element_by_element():
    x = torch.full((64, 16), 60000.0, dtype=torch.float16)  # finite values whose float16 sum is inf
    assert not bool(torch.isfinite(x.sum())) and all_finite(x, rows=5)
    x[63, 15] = float("nan")
    assert not all_finite(x, rows=5)


def test_integers_empty_and_1d():
    assert all_finite(torch.arange(5)) and all_finite(torch.empty(0)) and all_finite(torch.ones(3))
    assert not all_finite(torch.tensor([1.0, float("nan")]))
