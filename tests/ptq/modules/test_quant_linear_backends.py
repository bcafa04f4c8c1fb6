"""QuantLinear's forward backends agree with the exact dequantize-every-call path."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ptq import QuantSpec
from ptq.algorithms import gptq, rtn
from ptq.modules import QuantLinear
from ptq.modules.weight_only_forward import resolve_backend


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.delenv("PTQ_QLINEAR_BACKEND", raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def packed(spec: QuantSpec, K: int = 256, N: int = 64, seed: int = 0) -> QuantLinear:
    torch.manual_seed(seed)
    lin = nn.Linear(K, N)
    q = rtn(lin.weight.data, spec)
    lin.weight.data.copy_(q.weight)
    return QuantLinear.from_float(lin, spec, q.scale, q.zero)


def run(ql: QuantLinear, x: torch.Tensor, backend: str) -> torch.Tensor:
    ql.backend = backend
    try:
        return ql(x)
    finally:
        ql.backend = "auto"


CASES = [
    (QuantSpec(4, granularity="group", group_size=64), "int4pack"),
    (QuantSpec(4, symmetric=True, granularity="group", group_size=32), "int4pack"),
    (QuantSpec(8), "int8pack"),
    (QuantSpec(8, symmetric=True), "int8pack"),
    (QuantSpec(3, granularity="group", group_size=64), "cached"),
]


@pytest.mark.parametrize("spec,fused", CASES, ids=lambda c: c.describe() if isinstance(c, QuantSpec) else c)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backends_agree_with_dequant(spec, fused, dtype):
    ql = packed(spec)
    x = torch.randn(3, 5, 256).to(dtype)
    ref = run(ql, x, "dequant")
    assert torch.equal(run(ql, x, "cached"), ref)  # the same weight, built once
    y = run(ql, x, fused)
    assert y.shape == ref.shape and y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert torch.allclose(y.float(), ref.float(), rtol=tol, atol=tol * float(ref.float().abs().max()))


def test_auto_uses_fused_kernel_for_bf16_decoding_and_cache_for_prefill():
    ql = packed(QuantSpec(4, granularity="group", group_size=64))
    assert resolve_backend(ql, torch.zeros(1, 256, dtype=torch.bfloat16)) == "int4pack"
    assert resolve_backend(ql, torch.zeros(512, 256, dtype=torch.bfloat16)) == "cached"
    assert resolve_backend(ql, torch.zeros(1, 256)) == "cached"
    ql.tile_rows = 16  # bounded memory asked for: never cache
    assert resolve_backend(ql, torch.zeros(512, 256)) == "dequant"


def test_float_zero_points_fall_back_to_the_cached_weight():
    spec = QuantSpec(4, granularity="group", group_size=64, zero_dtype="float16")  # HQQ-style real zeros
    ql = packed(spec)
    assert ql.zero_points is not None
    xb = torch.randn(1, 256, dtype=torch.bfloat16)
    assert resolve_backend(ql, xb) == "cached"
    ql.backend = "int4pack"  # asked for explicitly: still refused
    assert resolve_backend(ql, xb) == "cached"
    assert torch.equal(ql(xb), run(ql, xb, "dequant"))


def test_cache_follows_the_buffers():
    spec = QuantSpec(4, granularity="group", group_size=64)
    ql, other = packed(spec, seed=0), packed(spec, seed=1)
    x = torch.randn(4, 256)
    y0 = ql(x)
    with torch.no_grad():
        ql.qweight.copy_(other.qweight)  # in place: the version counter moves
    assert torch.equal(ql(x), run(ql, x, "dequant"))
    assert not torch.equal(ql(x), y0)
    ql.load_state_dict(other.state_dict(), assign=True)  # replaced buffers
    assert torch.equal(ql(x), other(x))
    assert list(ql.state_dict()) == ["qweight", "scales", "qzeros", "bias"]  # the cache is never saved


def test_act_order_int4_is_permuted_once():
    torch.manual_seed(0)
    K, N, gs = 256, 32, 64
    lin = nn.Linear(K, N)
    X = torch.randn(512, K) * torch.linspace(0.1, 3, K)[torch.randperm(K)]
    H = 2 * X.t() @ X / X.shape[0]
    spec = QuantSpec(4, granularity="group", group_size=gs)
    r = gptq(lin.weight.data, H, spec, act_order=True)
    lin.weight.data.copy_(r.weight)
    ql = QuantLinear.from_float(lin, spec, r.scale, r.zero, g_idx=r.g_idx)
    assert ql.g_idx is not None
    x = torch.randn(3, K)
    ref = run(ql, x, "dequant")
    y = run(ql, x, "int4pack")
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_one_cached_weight_per_layer_across_dtypes():
    ql = packed(QuantSpec(3, granularity="group", group_size=64))
    x = torch.randn(4, 256)
    ql(x)
    ql(x.bfloat16())
    cached = [v for k, v in vars(ql).items() if k.startswith("_derived_")]
    assert len(cached) == 1 and cached[0][1][0].dtype == torch.bfloat16  # the float32 copy was dropped
    assert torch.equal(ql(x), run(ql, x, "dequant"))
