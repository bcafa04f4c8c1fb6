"""Fused weight-only kernels against ``x @ (scale * (Q - zero))^T`` computed in float64."""
from __future__ import annotations

import pytest
import torch

from ptq.kernels.weight_only_matmul import (
    choose_weight_backend, group_order, int4pack_matmul, int4pack_weight, int8pack_matmul, int8pack_weight,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny matmuls on one thread


def grid(N: int, K: int, bits: int, groups: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    maxq = (1 << bits) - 1
    Q = torch.randint(0, maxq + 1, (N, K), generator=g, dtype=torch.int32)
    scale = torch.rand(N, groups, generator=g) * 0.02 + 1e-3
    zero = torch.randint(0, maxq + 1, (N, groups), generator=g).float()
    return Q, scale, zero


def reference(x, Q, scale, zero, g_idx=None):
    K = Q.shape[1]
    cols = g_idx.long() if g_idx is not None else torch.arange(K) // (K // scale.shape[1])
    W = scale.double()[:, cols] * (Q.double() - zero.double()[:, cols])
    return x.double() @ W.t()


@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int4pack_maps_scale_times_code_minus_zero(group_size, dtype):
    N, K = 48, 512
    Q, scale, zero = grid(N, K, 4, K // group_size)
    x = torch.randn(5, K)
    packed, SZ = int4pack_weight(Q, scale, zero, group_size)
    y = int4pack_matmul(x.to(dtype), packed, SZ.to(dtype), group_size)
    ref = reference(x.to(dtype), Q, scale, zero)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert y.dtype == dtype and torch.allclose(y.double(), ref, rtol=tol, atol=tol * float(ref.abs().max()))


def test_int4pack_act_order_columns_are_sorted_into_groups():
    N, K, gs = 32, 256, 64
    Q, scale, zero = grid(N, K, 4, K // gs, seed=1)
    order = torch.randperm(K, generator=torch.Generator().manual_seed(3))
    g_idx = (torch.argsort(order) // gs).to(torch.int32)  # GPTQ act-order: column j in group rank(j) // gs
    perm = group_order(g_idx, gs)
    assert perm is not None and torch.equal(g_idx[perm].long(), torch.arange(K) // gs)
    packed, SZ = int4pack_weight(Q.index_select(1, perm), scale, zero, gs)
    x = torch.randn(7, K)
    y = int4pack_matmul(x, packed, SZ, gs, perm)
    ref = reference(x, Q, scale, zero, g_idx)
    assert torch.allclose(y.double(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_group_order_refuses_unequal_groups():
    g_idx = torch.tensor([0, 0, 0, 1], dtype=torch.int32)
    assert group_order(g_idx, 2) is None


@pytest.mark.parametrize("symmetric", [True, False])
def test_int8pack_with_zero_correction(symmetric):
    N, K = 40, 96
    Q, scale, zero = grid(N, K, 8, 1, seed=2)
    if symmetric:
        zero = torch.full_like(zero, 128.0)
    q8, s, c = int8pack_weight(Q, scale, zero)
    assert (c is None) == symmetric
    x = torch.randn(6, K)
    y = int8pack_matmul(x, q8, s, c)
    ref = reference(x, Q, scale, zero)
    assert torch.allclose(y.double(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_choice_follows_format_dtype_and_rows(monkeypatch):
    monkeypatch.delenv("PTQ_QLINEAR_BACKEND", raising=False)
    bf16, f32 = torch.bfloat16, torch.float32
    assert choose_weight_backend(4, "group", 64, 576, 1, bf16) == "int4pack"
    assert choose_weight_backend(8, "channel", None, 576, 1, bf16) == "int8pack"
    assert choose_weight_backend(4, "group", 64, 576, 512, bf16) == "cached"  # prefill: the bf16 GEMM wins
    assert choose_weight_backend(4, "group", 64, 576, 1, f32) == "cached"  # no vectorized float32 kernel
    assert choose_weight_backend(3, "group", 64, 576, 1, bf16) == "cached"
    assert choose_weight_backend(4, "group", 16, 576, 1, bf16) == "cached"  # group size the kernel lacks
    assert choose_weight_backend(3, "group", 64, 576, 1, f32, "int4pack") == "cached"  # does not fit
    monkeypatch.setenv("PTQ_QLINEAR_BACKEND", "dequant")
    assert choose_weight_backend(4, "group", 64, 576, 1, bf16) == "dequant"
    monkeypatch.setenv("PTQ_QLINEAR_BACKEND", "fast")
    with pytest.raises(ValueError, match="PTQ_QLINEAR_BACKEND"):
        choose_weight_backend(4, "group", 64, 576, 1, bf16)
