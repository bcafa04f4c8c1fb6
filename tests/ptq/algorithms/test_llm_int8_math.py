"""LLM.int8() math: vector-wise quantization, outlier columns, the decomposition (Eq. 7)."""
from __future__ import annotations

import math

import pytest
import torch

from ptq.algorithms.llm_int8 import (absmax_quantize, decomposed_matmul, dequantize_weight, int8_matmul_dequant,
                                     outlier_columns)


def data(seed=0, M=64, K=96, N=48, outliers=(5, 40)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=g)
    x[:, list(outliers)] *= 30
    return x, torch.randn(N, K, generator=g) * 0.05


def test_absmax_quantize_rows_and_tensor():
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    q, s = absmax_quantize(x, dim=-1)
    assert q.dtype == torch.int8 and s.shape == (2, 1)
    assert s[0, 0] == pytest.approx(2 / 127) and s[1, 0] == 1.0  # all-zero row: scale 1, codes 0
    assert q[0].tolist() == [64, -127, 32] and q[1].tolist() == [0, 0, 0]
    qt, st = absmax_quantize(x, dim=None)
    assert st.dim() == 0 and st == pytest.approx(2 / 127)


def test_outlier_columns_and_threshold():
    x, _ = data()
    cols = outlier_columns(x, 6.0)
    assert cols[5] and cols[40] and int(cols.sum()) <= 10
    assert not outlier_columns(x, math.inf).any()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="threshold must be positive"):
            outlier_columns(x, bad)


def test_decomposition_with_float_weights_is_exact_on_outlier_part():
    x, W = data()
    cols = outlier_columns(x, 6.0)
    Wq, sw = absmax_quantize(W, dim=-1)
    y = decomposed_matmul(x, Wq, sw, cols, W[:, cols], integer=False)
    idx = cols.nonzero().squeeze(1)
    expected_out = x[:, idx] @ W[:, idx].t()
    rest = int8_matmul_dequant(x.index_fill(1, idx, 0.0), Wq, sw, integer=False)
    torch.testing.assert_close(y, expected_out + rest)


def test_decomposition_beats_vectorwise_which_beats_per_tensor():
    x, W = data()
    ref = x @ W.t()
    Wq, sw = absmax_quantize(W, dim=-1)
    err = lambda y: float((y - ref).norm() / ref.norm())  # noqa: E731
    decomposed = err(decomposed_matmul(x, Wq, sw, outlier_columns(x, 6.0), None))
    vector = err(int8_matmul_dequant(x, Wq, sw))
    Wt, st = absmax_quantize(W, dim=None)
    tensor = err(int8_matmul_dequant(x, Wt, st, granularity="tensor"))
    assert decomposed < vector < tensor
    assert decomposed < 0.01


@pytest.mark.parametrize("granularity", ["vector", "tensor"])
def test_integer_and_fake_paths_agree(granularity):
    x, W = data(M=40)
    Wq, sw = absmax_quantize(W, dim=-1 if granularity == "vector" else None)
    cols = outlier_columns(x, 6.0)
    a = decomposed_matmul(x, Wq, sw, cols, None, granularity, integer=True)
    b = decomposed_matmul(x, Wq, sw, cols, None, granularity, integer=False)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dequantize_weight(Wq, sw), W, atol=float(sw.max()), rtol=0)


@pytest.mark.parametrize("n_outliers", [0, 3])
def test_shared_abs_gives_the_same_result_bit_for_bit(n_outliers):
    torch.manual_seed(0)
    x = torch.randn(24, 64)
    x[:, torch.randperm(64)[:n_outliers]] *= 40
    W_q, s_w = absmax_quantize(torch.randn(16, 64))
    outliers = outlier_columns(x, 6.0)
    ref = decomposed_matmul(x, W_q, s_w, outliers, None)
    a = x.abs()
    assert torch.equal(outlier_columns(x, 6.0, a), outliers)
    assert torch.equal(decomposed_matmul(x, W_q, s_w, outliers, None, x_abs=a), ref)
