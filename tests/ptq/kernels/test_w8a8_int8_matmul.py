"""int8_matmul is exact on every backend, including the fbgemm K-chunking and the extremes."""
from importlib import import_module

import pytest
import torch

from ptq.kernels import CPUInt8Support, choose_backend, cpu_int8_support, int8_matmul

kernel = import_module("ptq.kernels.int8_matmul")  # the module (the package attribute is the function)


def _usable(backend: str) -> None:
    if backend == "fbgemm" and not cpu_int8_support().fbgemm_exact:
        pytest.skip(cpu_int8_support().describe())


def _ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.long() @ b.long().t()).int()


@pytest.mark.parametrize("M,K,N", [(32, 64, 16), (4, 40, 24), (33, 2056, 8), (20, 13, 7)])
@pytest.mark.parametrize("backend", ["auto", "fbgemm", "float", "reference"])
def test_exact_random(M: int, K: int, N: int, backend: str) -> None:
    _usable(backend)
    g = torch.Generator().manual_seed(M + K + N)
    a = torch.randint(-128, 128, (M, K), dtype=torch.int8, generator=g)
    b = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    assert torch.equal(int8_matmul(a, b, backend), _ref(a, b))


@pytest.mark.parametrize("backend", ["auto", "int_mm", "fbgemm", "float"])
def test_exact_extremes(backend: str) -> None:
    """Saturation-prone values (|a| = |b| = 127, long K): no int16 saturation, no float rounding."""
    _usable(backend)
    a = torch.full((32, 2048), 127, dtype=torch.int8)
    a[:, ::2] = -128
    b = torch.full((16, 2048), -128, dtype=torch.int8)
    assert torch.equal(int8_matmul(a, b, backend), _ref(a, b))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="int8"):
        int8_matmul(torch.zeros(4, 8), torch.zeros(4, 8, dtype=torch.int8))
    with pytest.raises(ValueError, match="\\[N, K\\]"):
        int8_matmul(torch.zeros(4, 8, dtype=torch.int8), torch.zeros(4, 9, dtype=torch.int8))
    with pytest.raises(ValueError, match="_int_mm"):
        int8_matmul(torch.zeros(4, 8, dtype=torch.int8), torch.zeros(8, 8, dtype=torch.int8), "int_mm")


def test_env_backend_override(monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.randint(-128, 128, (32, 64), dtype=torch.int8)
    b = torch.randint(-128, 128, (16, 64), dtype=torch.int8)
    monkeypatch.setenv("PTQ_INT8_BACKEND", "float")
    assert choose_backend(32, 64, 16) == "float" and torch.equal(int8_matmul(a, b), _ref(a, b))
    monkeypatch.setenv("PTQ_INT8_BACKEND", "cuda")
    with pytest.raises(ValueError, match="PTQ_INT8_BACKEND"):
        int8_matmul(a, b)


@pytest.mark.parametrize("support, large, small", [
    (CPUInt8Support("AVX512", int_mm_fast=True, fbgemm_exact=True), "int_mm", "fbgemm"),
    (CPUInt8Support("AVX2", int_mm_fast=False, fbgemm_exact=False), "float", "float"),  # this project's AVX2 hosts
    (CPUInt8Support("AVX2", int_mm_fast=False, fbgemm_exact=True), "fbgemm", "fbgemm"),
])
def test_auto_never_picks_a_slow_or_inexact_kernel(support, large, small, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTQ_INT8_BACKEND", raising=False)
    monkeypatch.setattr(kernel, "cpu_int8_support", lambda: support)
    assert (choose_backend(512, 576, 576), choose_backend(1, 576, 576)) == (large, small)


def test_saturating_fbgemm_is_refused_not_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel, "cpu_int8_support", lambda: CPUInt8Support("AVX2", False, False))
    a = torch.full((4, 64), 127, dtype=torch.int8)
    with pytest.raises(ValueError, match="fbgemm's int8 GEMM is not exact on this CPU"):
        int8_matmul(a, a, "fbgemm")


def test_self_check_matches_what_fbgemm_computes() -> None:
    support = cpu_int8_support()
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        assert not support.fbgemm_exact
        return
    a = torch.full((3, 512), 127, dtype=torch.int8)
    assert support.fbgemm_exact == torch.equal(kernel._fbgemm(a, a), _ref(a, a))


def test_packed_weight_is_used_for_its_backend_only() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-128, 128, (20, 1500), dtype=torch.int8, generator=g)
    b = torch.randint(-128, 128, (24, 1500), dtype=torch.int8, generator=g)
    packed = kernel.pack_weight(b, "float")
    assert torch.equal(int8_matmul(a, b, "float", packed=packed), _ref(a, b))
    assert torch.equal(int8_matmul(a, b, "reference", packed=packed), _ref(a, b))  # ignored by another backend
    with pytest.raises(ValueError, match="packed weight"):
        kernel.pack_weight(b, "int_mm")
