"""Exact int8 x int8 -> int32 matrix product: :func:`int8_matmul`.

``C[m, n] = sum_k A[m, k] * B[n, k]`` with ``A`` int8 ``[M, K]`` (activation codes), ``B`` int8
``[N, K]`` (weight codes, the ``nn.Linear`` layout) and ``C`` int32 ``[M, N]``: the integer core of
a W8A8 linear, ``Y = s_x * s_w * (X_q @ W_q^T)`` (SmoothQuant, Xiao et al., 2023, §2 and §5;
LLM.int8(), Dettmers et al., 2022, §2: "vector-wise quantization").

Backend choice. ``torch._int_mm`` runs oneDNN's int8 kernels, fast where the CPU has them (x86 with
AVX-512 VNNI or AMX, or not x86) and much slower than a float matmul where it has not (AVX2-only x86).
fbgemm's AVX2 kernel (``vpmaddubsw``) adds pairs of int8 products in int16 and saturates (PyTorch's x86
quantization avoids it with 7-bit activations, ``reduce_range``), so it is used only where a self-test
shows it exact. ``backend="auto"`` checks the CPU once (:func:`cpu_int8_support`) and picks, in order:

* ``"int_mm"``: ``torch._int_mm(A, B.t())`` with ``B`` kept ``[N, K]`` contiguous (the
  transposed view is the fast layout), where the CPU has fast int8 (x86 with AVX-512, or not
  x86) and the shapes allow (``M > 16``, ``K``, ``N`` multiples of 8); exact int32 accumulation.
* ``"fbgemm"`` (e.g. decoding with ``M <= 16``), only where a self-test shows it exact:
  ``quantized.linear_with_input_q_dq_qweight_dq_output_fp32`` with the activation as quint8
  ``A + 128`` (zero point 128, scale 1) and per-tensor weight scale 1. fbgemm subtracts the
  zero point's contribution ``128 * sum_k B[n, k]`` in int32; the result is returned as
  float32, exact while ``|C| <= 2**24``: ``K`` is split in chunks of at most 1024
  (``128 * 128 * 1024 = 2**24``) summed in int32.
* ``"float"``: the codes as float32 through the float GEMM, in the same K-chunks (every partial
  sum is an integer of magnitude at most ``2**24``, so exact), each chunk's result cast to
  int32 and summed. No faster than a float matmul, but exact everywhere: the fallback.
* ``"reference"``: int64 matmul of the widened codes (slow, always available; tests).

``PTQ_INT8_BACKEND`` overrides ``"auto"``. A module reuses its weight's backend-specific form
(:func:`pack_weight`) across calls.
"""
from __future__ import annotations

import functools
import os
import platform
import warnings
from dataclasses import dataclass
from typing import Any

import torch

BACKENDS = ("auto", "int_mm", "fbgemm", "float", "reference")
PACKABLE_BACKENDS = ("fbgemm", "float")  # backends with a reusable form of the weight (pack_weight)
_EXACT_CHUNK = 1024  # 128 * 128 * 1024 = 2**24: a K-chunk's float32 accumulator (fbgemm, float) is an exact integer


def int_mm_supported(M: int, K: int, N: int) -> bool:
    """Whether ``torch._int_mm`` accepts these sizes on CPU (``M > 16``, ``K % 8 == N % 8 == 0``)."""
    return M > 16 and K % 8 == 0 and N % 8 == 0 and hasattr(torch, "_int_mm")


@dataclass(frozen=True)
class CPUInt8Support:
    """What this CPU's int8 kernels can do (:func:`cpu_int8_support`)."""

    capability: str  # torch.backends.cpu.get_cpu_capability(), e.g. "AVX2", "AVX512"
    int_mm_fast: bool  # oneDNN has a real int8 kernel behind torch._int_mm
    fbgemm_exact: bool  # fbgemm's int8 GEMM does not saturate (VNNI), and fbgemm is built in

    def describe(self) -> str:
        slow = "" if self.int_mm_fast else " (slow here: no int8 kernel)"
        fb = "exact" if self.fbgemm_exact else "unusable (saturates in int16 or missing)"
        return f"CPU {self.capability}: torch._int_mm{slow}; fbgemm {fb}"


@functools.lru_cache(maxsize=None)
def cpu_int8_support() -> CPUInt8Support:
    """Checked once per process: the CPU capability, and a tiny fbgemm product whose pairs of
    products (127 * 127 + 127 * 127 with the +128 shift: 2 * 255 * 127) overflow int16."""
    capability = torch.backends.cpu.get_cpu_capability()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    int_mm_fast = not x86 or capability.upper().startswith("AVX512")
    fbgemm_exact = False
    if "fbgemm" in torch.backends.quantized.supported_engines:
        a = torch.full((1, 64), 127, dtype=torch.int8)
        try:
            fbgemm_exact = int(_fbgemm(a, a)[0, 0]) == 64 * 127 * 127
        except RuntimeError:
            fbgemm_exact = False
    return CPUInt8Support(capability, int_mm_fast, fbgemm_exact)


@dataclass(frozen=True)
class PackedWeight:
    """A weight's int8 codes ``[N, K]`` in the form one backend computes with (see :func:`pack_weight`)."""

    backend: str
    data: Any


def pack_weight(b: torch.Tensor, backend: str) -> PackedWeight:
    """The reusable form of int8 weight codes ``b [N, K]`` for ``backend`` (one of :data:`PACKABLE_BACKENDS`):
    fbgemm's packed K-chunks, or the codes as float32."""
    if backend == "fbgemm":
        return PackedWeight(backend, fbgemm_pack(b))
    if backend == "float":
        return PackedWeight(backend, b.float())
    raise ValueError(f"only the {' and '.join(PACKABLE_BACKENDS)} backends have a packed weight, got {backend!r}")


def choose_backend(M: int, K: int, N: int, device: torch.device | str = "cpu", backend: str = "auto") -> str:
    """The backend ``int8_matmul`` uses for ``[M, K] x [N, K]`` on ``device`` (resolves ``"auto"``,
    honouring ``PTQ_INT8_BACKEND``)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get("PTQ_INT8_BACKEND", "auto")
        if backend not in BACKENDS:
            raise ValueError(f"PTQ_INT8_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "int_mm" and not int_mm_supported(M, K, N):
            backend = "auto"
    if backend != "auto":
        return backend
    if torch.device(device).type != "cpu":
        return "int_mm" if int_mm_supported(M, K, N) else "reference"
    support = cpu_int8_support()
    if support.int_mm_fast and int_mm_supported(M, K, N):
        return "int_mm"
    if support.fbgemm_exact:
        return "fbgemm"
    return "float"


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise ValueError(f"int8_matmul needs int8 operands, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"int8_matmul needs A [M, K] and B [N, K], got {tuple(a.shape)} and {tuple(b.shape)}")


def fbgemm_prepack(b: torch.Tensor, K0: int = 0, K1: int | None = None) -> object:
    """fbgemm packed weight of the int8 codes ``B[:, K0:K1]`` (per-tensor scale 1, zero point 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized-tensor constructors are deprecated but still the fbgemm API
        qb = torch._make_per_tensor_quantized_tensor(b[:, K0:K1].contiguous(), 1.0, 0)
        return torch.ops.quantized.linear_prepack(qb, None)


def fbgemm_pack(b: torch.Tensor) -> list[object]:
    """fbgemm packed weights of ``B``'s K-chunks, to pass to :func:`int8_matmul` as ``packed`` (reuse them)."""
    return [fbgemm_prepack(b, k0, min(k0 + _EXACT_CHUNK, b.shape[1])) for k0 in range(0, b.shape[1], _EXACT_CHUNK)]


def _float(a: torch.Tensor, b: torch.Tensor, b_float: torch.Tensor | None = None) -> torch.Tensor:
    Bf = b.float() if b_float is None else b_float
    Af = a.float()
    out = None
    for k0 in range(0, a.shape[1], _EXACT_CHUNK):
        k1 = min(k0 + _EXACT_CHUNK, a.shape[1])
        part = (Af[:, k0:k1] @ Bf[:, k0:k1].t()).to(torch.int32)  # exact integers below 2**24
        out = part if out is None else out.add_(part)
    assert out is not None
    return out


def _fbgemm(a: torch.Tensor, b: torch.Tensor, packed: list[object] | None = None) -> torch.Tensor:
    out = None
    packs = packed if packed is not None else fbgemm_pack(b)
    for i, k0 in enumerate(range(0, a.shape[1], _EXACT_CHUNK)):
        k1 = min(k0 + _EXACT_CHUNK, a.shape[1])
        packed_chunk = packs[i]
        part = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            a[:, k0:k1].float().contiguous(), 1.0, 128, packed_chunk)
        part = part.round().to(torch.int32)
        out = part if out is None else out + part
    assert out is not None
    return out


def int8_matmul(a: torch.Tensor, b: torch.Tensor, backend: str = "auto",
                packed: PackedWeight | None = None) -> torch.Tensor:
    """``A @ B^T`` exactly, int8 ``[M, K]`` x int8 ``[N, K]`` -> int32 ``[M, N]``.

    ``backend="auto"``: :func:`choose_backend` (see the module docstring for the measurements
    behind the choice). ``packed``: :func:`pack_weight` of ``b``, used when it is for the backend
    chosen (so a module does not repack or convert its weight on every call).
    """
    _check(a, b)
    M, K = a.shape
    N = b.shape[0]
    backend = choose_backend(M, K, N, a.device, backend)
    if M == 0 or N == 0 or K == 0:
        return torch.zeros(M, N, dtype=torch.int32, device=a.device)
    data = packed.data if packed is not None and packed.backend == backend else None
    if backend == "int_mm":
        if not int_mm_supported(M, K, N):
            raise ValueError(f"torch._int_mm needs M > 16 and K, N multiples of 8, got M={M}, K={K}, N={N}")
        return torch._int_mm(a, b.t())
    if backend == "fbgemm":
        if not cpu_int8_support().fbgemm_exact:
            raise ValueError("fbgemm's int8 GEMM is not exact on this CPU (it saturates in int16 without "
                             "AVX-512 VNNI); use the 'float' or 'int_mm' backend (or 'auto')")
        return _fbgemm(a, b, data)
    if backend == "float":
        return _float(a, b, data)
    return (a.to(torch.int64) @ b.to(torch.int64).t()).to(torch.int32)


def rescale(acc: torch.Tensor, s_x: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
    """``(s_x s_w^T) * acc`` as float32 for an int32 accumulator ``acc [M, N]``; ``s_x`` ``[M, 1]`` or ``[]``
    (per token / per tensor), ``s_w`` ``[N]``, ``[N, 1]`` or ``[]`` (per output channel / per tensor).

    The accumulator is cast to float32 first, then scaled in place: the same numbers as
    ``torch.mul(acc, s_x).mul_(s_w)`` (which casts to float32 too), but the mixed int32 x float32
    multiply is a slow unvectorized loop in PyTorch's CPU build, several times the cost of the cast
    and two in-place float multiplies.
    """
    return acc.to(torch.float32).mul_(s_x).mul_(s_w.reshape(1, -1) if s_w.dim() else s_w)

