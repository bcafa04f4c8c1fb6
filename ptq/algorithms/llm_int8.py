"""LLM.int8(): vector-wise int8 matmul with mixed-precision outlier decomposition.

Dettmers, Lewis, Belkada, Zettlemoyer, "LLM.int8(): 8-bit Matrix Multiplication for
Transformers at Scale" (NeurIPS 2022). For ``Y = X W^T`` with ``X [M, K]``, ``W [N, K]``:

* outlier feature dimensions (Sec. 3.2): ``O = {j : max_i |X_ij| >= threshold}`` (6.0);
* vector-wise quantization (Sec. 3.1): ``s_x[i] = max_j |X_ij| / 127`` per row (token) of the
  non-outlier part, ``s_w[n] = max_k |W_nk| / 127`` per output row, codes
  ``X_q = round(X / s_x)``, ``W_q = round(W / s_w)``;
* the decomposition (Eq. 7)::

      Y = X[:, O] W[:, O]^T  +  (s_x s_w^T) * (X_q[:, not O] W_q[:, not O]^T)

  the first term in floating point, the second as int8 x int8 -> int32 dequantized by the
  outer product of the scales.

``threshold = inf`` gives the paper's "absmax vector-wise" baseline (no decomposition);
``granularity="tensor"`` the naive per-tensor absmax int8 baseline (one scale for ``X``,
one for ``W``).
"""
from __future__ import annotations

import math

import torch

from ptq.kernels import int8_matmul

QMAX = 127.0


def absmax_quantize(x: torch.Tensor, dim: int | None = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes and float32 scales ``absmax / 127`` (per slice along ``dim``, or
    per tensor with ``dim=None``); an all-zero slice gets scale 1 (codes 0)."""
    x = x.float()
    if dim is None:
        lo, hi = torch.aminmax(x)
    else:
        lo, hi = torch.aminmax(x, dim=dim, keepdim=True)
    a = torch.maximum(-lo, hi)
    scale = torch.where(a > 0, a / QMAX, torch.ones_like(a))
    return torch.mul(x, 1.0 / scale).round_().clamp_(-QMAX, QMAX).to(torch.int8), scale


def outlier_columns(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean ``[K]``: the columns of ``x [M, K]`` with any ``|x| >= threshold``."""
    check_threshold(threshold)
    if math.isinf(threshold):
        return torch.zeros(x.shape[-1], dtype=torch.bool, device=x.device)
    lo, hi = torch.aminmax(x, dim=0)
    return (hi >= threshold) | (lo <= -threshold)


def check_threshold(threshold: float) -> None:
    if not threshold > 0:
        raise ValueError(f"the outlier threshold must be positive (6.0 in the paper; inf for none), got {threshold}")


def int8_matmul_dequant(
    x: torch.Tensor, W_q: torch.Tensor, s_w: torch.Tensor, granularity: str = "vector", integer: bool = True
) -> torch.Tensor:
    """``(s_x s_w^T) * (X_q W_q^T)`` for float ``x [M, K]`` and int8 ``W_q [N, K]`` with scales
    ``s_w`` ``[N, 1]`` (vector) or ``[]`` (tensor). ``integer=False`` computes the same thing as a
    float matmul of the dequantized codes (fake quantization)."""
    x_q, s_x = absmax_quantize(x, dim=-1 if granularity == "vector" else None)
    if integer:
        return int8_matmul(x_q, W_q).float() * (s_x * s_w.reshape(1, -1) if s_w.dim() else s_x * s_w)
    return (x_q.float() * s_x) @ dequantize_weight(W_q, s_w).t()


def dequantize_weight(W_q: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
    """``W_q * s_w`` with ``s_w`` per output row ``[N, 1]`` / ``[N]`` or per tensor ``[]``."""
    return W_q.float() * (s_w.reshape(-1, 1) if s_w.dim() else s_w)


def decomposed_matmul(
    x: torch.Tensor, W_q: torch.Tensor, s_w: torch.Tensor, outliers: torch.Tensor, W_outlier: torch.Tensor | None,
    granularity: str = "vector", integer: bool = True,
) -> torch.Tensor:
    """Eq. 7 for ``x [M, K]``: ``outliers`` a boolean ``[K]``; ``W_outlier [N, |O|]`` the float
    weight columns of the outliers (``None``: dequantized from ``W_q``, as bitsandbytes does)."""
    if not bool(outliers.any()):
        return int8_matmul_dequant(x, W_q, s_w, granularity, integer)
    idx = outliers.nonzero().squeeze(1)
    x = x.float()
    x_out = x.index_select(1, idx)
    if W_outlier is None:
        W_outlier = dequantize_weight(W_q.index_select(1, idx), s_w)
    x_rest = x.index_fill(1, idx, 0.0)  # outlier columns contribute nothing to the int8 part
    return int8_matmul_dequant(x_rest, W_q, s_w, granularity, integer) + x_out @ W_outlier.t()
