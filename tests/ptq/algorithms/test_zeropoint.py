"""Zeropoint int8 rows: the grid, exact 0, and the int32 identity of the matmul."""
from __future__ import annotations

import pytest
import torch

from ptq.algorithms.zeropoint import (weight_correction, zeropoint_dequantize, zeropoint_matmul,
                                      zeropoint_quantize_rows)


def test_rows_use_all_codes_and_keep_zero_exact():
    x = torch.tensor([[-1.0, 0.0, 3.0, 0.5], [2.0, 4.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    q, s, z = zeropoint_quantize_rows(x)
    assert q.dtype == torch.int8 and s.shape == (3, 1) and z.dtype == torch.int32
    assert q[0].min() == -128 and q[0].max() == 127  # lo and hi map to the ends of the grid
    assert s[0, 0] == pytest.approx(4 / 255) and s[1, 0] == pytest.approx(4 / 255)  # range widened to hold 0
    assert q[0, 1] == z[0, 0] and q[1, 3] == z[1, 0]  # 0 is exactly the zero point
    assert s[2, 0] == 1 and (q[2] == z[2, 0]).all()  # all-zero row
    err = (zeropoint_dequantize(q, s, z) - x).abs()
    assert bool((err <= s / 2 + 1e-6).all())


def test_skewed_rows_are_finer_than_absmax():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 64, generator=g) + 1.0  # positive rows
    q, s, z = zeropoint_quantize_rows(x)
    zp = (zeropoint_dequantize(q, s, z) - x).norm()
    a = x.abs().amax(1, keepdim=True) / 127
    absmax = (torch.round(x / a) * a - x).norm()
    assert zp < 0.6 * absmax


@pytest.mark.parametrize("weight_zero", [False, True])
def test_int32_identity_equals_the_float_product(weight_zero):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 40, generator=g) + 0.7
    W = torch.randn(24, 40, generator=g) * 0.1 + (0.05 if weight_zero else 0.0)
    x_q, s_x, z_x = zeropoint_quantize_rows(x)
    if weight_zero:
        W_q, s_w, z_w = zeropoint_quantize_rows(W)
    else:
        s_w = W.abs().amax(1, keepdim=True) / 127
        W_q, z_w = torch.round(W / s_w).to(torch.int8), None
    exact = (x_q.long() - z_x.long()) @ (W_q.long() - (0 if z_w is None else z_w.long())).t()
    expected = exact.double() * s_x.double() * s_w.double().reshape(1, -1)
    y_int = zeropoint_matmul(x_q, s_x, z_x, W_q, s_w, z_w, integer=True)
    y_fake = zeropoint_matmul(x_q, s_x, z_x, W_q, s_w, z_w, integer=False)
    torch.testing.assert_close(y_int.double(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(y_fake.double(), expected, rtol=1e-5, atol=1e-5)
    c_w = weight_correction(W_q, z_w)
    torch.testing.assert_close(zeropoint_matmul(x_q, s_x, z_x, W_q, s_w, z_w, c_w=c_w), y_int)
    assert float((y_int - x @ W.t()).norm() / (x @ W.t()).norm()) < 0.02
