"""Weight-only quantized matmuls with PyTorch's fused CPU kernels: ``Y = X (scale * (Q - zero))^T``.

ptq stores a weight as unsigned codes ``Q`` in ``[0, maxq]`` with ``W = scale * (Q - zero)``
(GPTQ, Frantar et al., 2023, §2 and its released grid). Two fused kernels of PyTorch fit parts
of that family; each needs the weight rewritten once into its own layout:

* 4-bit groups, ``torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group_size, SZ)``
  (group sizes 32, 64, 128, 256, consecutive groups along ``K``). It computes
  ``W[n, k] = (Q[n, k] - 8) * SZ[g, n, 0] + SZ[g, n, 1]`` with ``g = k // group_size``, so ptq's
  grid maps exactly to ``SZ[g, n, 0] = scale`` and ``SZ[g, n, 1] = scale * (8 - zero)``
  (the same real number; the float rounding differs from ``scale * (Q - zero)`` by ~1 ulp).
  An act-order ``g_idx`` (GPTQ §"act-order": column ``k`` in group ``g_idx[k]``) is made
  consecutive by sorting the columns by group once (:func:`group_order`) and gathering the
  activation's columns in that order at every call.
* 8-bit per output channel, ``torch.ops.aten._weight_int8pack_mm(x, Q8, s)`` computing
  ``x @ (s * Q8)^T`` with signed ``Q8``. With ``Q8 = Q - 128`` ::

      Y = X (s * (Q - zero))^T = s * (X Q8^T) + (sum_k X[:, k]) * (s * (128 - zero))

  the second term vanishes on the symmetric grid (``zero = 128``).

Both kernels are vectorized only for bfloat16 / float16 activations in PyTorch 2.13's CPU build;
with float32 activations they are one to two orders of magnitude slower than a float32 matmul, and
even in bfloat16 they pay off for small ``M`` (decoding), not for prefill-sized batches (measured
ratios: ``docs/results.md``). :func:`choose_weight_backend` picks accordingly.
"""
from __future__ import annotations

import os

import torch

WEIGHT_BACKENDS = ("auto", "dequant", "cached", "int4pack", "int8pack")
INT4_GROUP_SIZES = (32, 64, 128, 256)
FUSED_DTYPES = (torch.bfloat16, torch.float16)  # activation dtypes the fused kernels are vectorized for
FUSED_MAX_ROWS = 16  # up to this many activation rows the fused kernels beat a bf16 matmul of the cached weight


def int4pack_fits(bits: int, granularity: str, group_size: int | None, in_features: int) -> bool:
    """Whether ``_weight_int4pack_mm_for_cpu`` can compute this grid (4-bit, supported group size)."""
    return (bits == 4 and granularity == "group" and group_size in INT4_GROUP_SIZES
            and in_features % group_size == 0)


def int8pack_fits(bits: int, granularity: str) -> bool:
    """Whether ``_weight_int8pack_mm`` can compute this grid (8-bit, one scale per output row)."""
    return bits == 8 and granularity == "channel"


def group_order(g_idx: torch.Tensor, group_size: int) -> torch.Tensor | None:
    """The column permutation (int64 ``[K]``) that makes an act-order ``g_idx`` consecutive
    (``g_idx[perm] == arange(K) // group_size``), or ``None`` when no permutation does (a group
    without exactly ``group_size`` columns)."""
    perm = torch.argsort(g_idx.to(torch.int64), stable=True)
    want = torch.arange(g_idx.numel(), device=g_idx.device) // group_size
    return perm if torch.equal(g_idx.to(torch.int64)[perm], want) else None


def int4pack_weight(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                    group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The int4 kernel's packed weight and ``SZ [K / group_size, N, 2]`` for codes ``[N, K]`` in
    ``[0, 15]`` with consecutive groups, ``scale`` and ``zero`` ``[N, K / group_size]`` (float32)."""
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32).contiguous(), 1)
    s = scale.float()
    SZ = torch.stack([s, s * (8.0 - zero.float())], dim=-1).transpose(0, 1).contiguous()
    return packed, SZ


def int4pack_matmul(x2: torch.Tensor, packed: torch.Tensor, SZ: torch.Tensor, group_size: int,
                    perm: torch.Tensor | None = None) -> torch.Tensor:
    """``x2 [M, K] @ W^T`` for a weight from :func:`int4pack_weight` (``SZ`` in ``x2``'s dtype);
    ``perm``: the :func:`group_order` the weight's columns were sorted by."""
    if perm is not None:
        x2 = x2.index_select(1, perm)
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x2.contiguous(), packed, group_size, SZ)


def int8pack_weight(codes: torch.Tensor, scale: torch.Tensor,
                    zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(Q8, s, c)`` for codes ``[N, K]`` in ``[0, 255]``, per-row ``scale`` and ``zero`` (``[N, 1]``):
    ``Q8 = Q - 128`` int8, ``s = scale`` ``[N]``, ``c = s * (128 - zero)`` ``[N]`` (``None`` when 0)."""
    q8 = (codes.to(torch.int32) - 128).to(torch.int8).contiguous()
    s = scale.float().reshape(-1)
    c = s * (128.0 - zero.float().reshape(-1))
    return q8, s, (c if bool(c.ne(0).any()) else None)


def int8pack_matmul(x2: torch.Tensor, q8: torch.Tensor, s: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """``x2 [M, K] @ (s * (Q - zero))^T`` from :func:`int8pack_weight` (``s``, ``c`` in ``x2``'s dtype)."""
    y = torch.ops.aten._weight_int8pack_mm(x2.contiguous(), q8, s)
    if c is not None:
        y = y.addcmul_(x2.sum(dim=1, keepdim=True, dtype=torch.float32).to(y.dtype), c)
    return y


def choose_weight_backend(bits: int, granularity: str, group_size: int | None, in_features: int,
                          rows: int, dtype: torch.dtype, backend: str = "auto") -> str:
    """The way a weight-only layer computes ``rows`` activation rows of ``dtype``.

    ``"auto"`` (``PTQ_QLINEAR_BACKEND`` overrides it): a fused kernel (``"int4pack"`` /
    ``"int8pack"``) where the grid fits and the activations are bfloat16/float16 with at most
    :data:`FUSED_MAX_ROWS` rows, else ``"cached"`` (the weight dequantized once and reused).
    A fused backend asked for where it does not fit falls back to ``"cached"``; ``"dequant"``
    dequantizes on every call (no extra memory, slowest).
    """
    if backend == "auto":
        backend = os.environ.get("PTQ_QLINEAR_BACKEND", "auto")
    if backend not in WEIGHT_BACKENDS:
        raise ValueError(f"the weight-only backend must be one of {', '.join(WEIGHT_BACKENDS)}, got {backend!r}"
                         " (PTQ_QLINEAR_BACKEND)")
    int4 = int4pack_fits(bits, granularity, group_size, in_features)
    int8 = int8pack_fits(bits, granularity)
    if backend == "auto":
        fused = dtype in FUSED_DTYPES and rows <= FUSED_MAX_ROWS
        return "int4pack" if fused and int4 else "int8pack" if fused and int8 else "cached"
    if (backend == "int4pack" and not int4) or (backend == "int8pack" and not int8):
        return "cached"
    return backend
