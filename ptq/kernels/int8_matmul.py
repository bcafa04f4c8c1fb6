"""Exact int8 x int8 -> int32 matrix product: :func:`int8_matmul`.

``C[m, n] = sum_k A[m, k] * B[n, k]`` with ``A`` int8 ``[M, K]`` (activation codes), ``B`` int8
``[N, K]`` (weight codes, the ``nn.Linear`` layout) and ``C`` int32 ``[M, N]``: the integer core of
a W8A8 linear, ``Y = s_x * s_w * (X_q @ W_q^T)`` (SmoothQuant, Xiao et al., 2023, §2 and §5;
LLM.int8(), Dettmers et al., 2022, §2: "vector-wise quantization").

Backend choice (measured on this 2-core "AMD EPYC" host, median ms, 2 threads, noisy shared host;
``scripts/bench_int8.py`` re-measures). Note: its CPU flags include ``avx512_vnni`` (torch reports
capability ``AVX512``), so it is *not* AVX2-only; oneDNN's VNNI kernels behind ``torch._int_mm``
are why it is fast here. On an AVX2-only CPU ``torch._int_mm`` was reported 30-60x slower than
fp32 (170-330 ms at 512 x 576 x 1536): there set ``PTQ_INT8_BACKEND=fbgemm`` (read by
``backend="auto"``), fbgemm being fast on AVX2.

=====================  =======  ==========  =====================  ========
M x K x N              fp32 mm  _int_mm     fbgemm (fp32 output)   oneDNN
=====================  =======  ==========  =====================  ========
512 x 576 x 1536       11.0     2.7         5.4                    4.1
512 x 1536 x 576       10.7     3.1         3.0                    4.2
512 x 576 x 576         5.7     0.47        1.5                    1.2
2048 x 4096 x 4096     784      196         211                    172
=====================  =======  ==========  =====================  ========

* ``"int_mm"`` (default whenever possible): ``torch._int_mm(A, B.t())`` with ``B`` kept
  ``[N, K]`` contiguous (the transposed view is the fast layout). It needs ``M > 16`` and
  ``K``, ``N`` multiples of 8; exact int32 accumulation.
* ``"fbgemm"`` (fallback for other shapes, e.g. decoding with ``M <= 16``):
  ``quantized.linear_with_input_q_dq_qweight_dq_output_fp32`` with the activation as quint8
  ``A + 128`` (zero point 128, scale 1) and per-tensor weight scale 1. fbgemm subtracts the
  zero point's contribution ``128 * sum_k B[n, k]`` in int32, so the accumulator is exact; it
  is returned as float32, exact while ``|C| <= 2**24``: ``K`` is therefore split in chunks of
  at most 1024 (``127 * 128 * 1024 < 2**24``) summed in int32, keeping the result exact.
* ``"reference"``: int64 matmul of the widened codes (slow, always available; tests).
"""
from __future__ import annotations

import os
import warnings

import torch

BACKENDS = ("auto", "int_mm", "fbgemm", "reference")
_FBGEMM_CHUNK = 1024  # 127 * 128 * 1024 < 2**24: every chunk's float32 accumulator is an exact integer


def int_mm_supported(M: int, K: int, N: int) -> bool:
    """Whether ``torch._int_mm`` accepts these sizes on CPU (``M > 16``, ``K % 8 == N % 8 == 0``)."""
    return M > 16 and K % 8 == 0 and N % 8 == 0 and hasattr(torch, "_int_mm")


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
    return [fbgemm_prepack(b, k0, min(k0 + _FBGEMM_CHUNK, b.shape[1])) for k0 in range(0, b.shape[1], _FBGEMM_CHUNK)]


def _fbgemm(a: torch.Tensor, b: torch.Tensor, packed: list[object] | None = None) -> torch.Tensor:
    out = None
    packs = packed if packed is not None else fbgemm_pack(b)
    for i, k0 in enumerate(range(0, a.shape[1], _FBGEMM_CHUNK)):
        k1 = min(k0 + _FBGEMM_CHUNK, a.shape[1])
        packed_chunk = packs[i]
        part = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            a[:, k0:k1].float().contiguous(), 1.0, 128, packed_chunk)
        part = part.round().to(torch.int32)
        out = part if out is None else out + part
    assert out is not None
    return out


def int8_matmul(a: torch.Tensor, b: torch.Tensor, backend: str = "auto",
                packed: list[object] | None = None) -> torch.Tensor:
    """``A @ B^T`` exactly, int8 ``[M, K]`` x int8 ``[N, K]`` -> int32 ``[M, N]``.

    ``backend="auto"`` uses ``torch._int_mm`` when the shapes allow it and fbgemm otherwise
    (see the module docstring for the measurements behind this choice). ``packed``: the
    :func:`fbgemm_pack` of ``b``, so that the fbgemm path does not repack it on every call.
    """
    _check(a, b)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    M, K = a.shape
    N = b.shape[0]
    if M == 0 or N == 0 or K == 0:
        return torch.zeros(M, N, dtype=torch.int32, device=a.device)
    if backend == "auto":
        backend = os.environ.get("PTQ_INT8_BACKEND", "auto")
        if backend not in BACKENDS:
            raise ValueError(f"PTQ_INT8_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "int_mm" and not int_mm_supported(M, K, N):
            backend = "auto"
    if backend == "auto":
        if int_mm_supported(M, K, N):
            backend = "int_mm"
        elif a.device.type == "cpu" and "fbgemm" in torch.backends.quantized.supported_engines:
            backend = "fbgemm"
        else:
            backend = "reference"
    if backend == "int_mm":
        if not int_mm_supported(M, K, N):
            raise ValueError(f"torch._int_mm needs M > 16 and K, N multiples of 8, got M={M}, K={K}, N={N}")
        return torch._int_mm(a, b.t())
    if backend == "fbgemm":
        return _fbgemm(a, b, packed)
    return (a.to(torch.int64) @ b.to(torch.int64).t()).to(torch.int32)
