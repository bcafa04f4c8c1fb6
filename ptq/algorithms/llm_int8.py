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
one for ``W``). ``zero_point=True`` replaces absmax by zeropoint quantization of the rows
(§2.1; :mod:`ptq.algorithms.zeropoint`), the paper's most accurate variant in Table 1
("zeropoint vector-wise + decomposition").
"""
from __future__ import annotations

import math

import torch

from ptq.errors import PTQUserError

from ptq.algorithms.absmax import QMAX, absmax_scale, quantize_rows, quantize_symmetric, quantize_tensor
from ptq.algorithms.zeropoint import zeropoint_dequantize, zeropoint_matmul, zeropoint_quantize_rows
from ptq.kernels import PackedWeight, int8_matmul, rescale

__all__ = ["QMAX", "absmax_quantize", "outlier_columns", "check_threshold", "int8_matmul_dequant",
           "dequantize_weight", "decomposed_matmul"]


def absmax_quantize(x: torch.Tensor, dim: int | None = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes and float32 scales ``absmax / 127`` (per row with ``dim=-1``, or
    per tensor with ``dim=None``); an all-zero slice gets scale 1 (codes 0)."""
    if dim is None:
        return quantize_tensor(x)
    if dim not in (-1, x.dim() - 1):
        raise ValueError(f"absmax_quantize quantizes rows (dim=-1) or the whole tensor (dim=None), got dim={dim}")
    return quantize_rows(x)


def outlier_columns(x: torch.Tensor, threshold: float, x_abs: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean ``[K]``: the columns of ``x [M, K]`` with any ``|x| >= threshold`` (``x_abs``: ``|x|`` if known)."""
    check_threshold(threshold)
    if math.isinf(threshold):
        return torch.zeros(x.shape[-1], dtype=torch.bool, device=x.device)
    return (x.abs() if x_abs is None else x_abs).amax(dim=0) >= threshold


def check_threshold(threshold: float) -> None:
    if not threshold > 0:
        raise PTQUserError(f"the outlier threshold must be positive (6.0 in the paper; inf for none), got {threshold}")


def _rescale(acc: torch.Tensor, s_x: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
    """``(s_x s_w^T) * acc`` for int32 ``acc [M, N]``, ``s_x`` ``[M, 1]`` or ``[]``, ``s_w`` ``[N, 1]`` or ``[]``."""
    return rescale(acc, s_x, s_w)


def int8_matmul_dequant(
    x: torch.Tensor, W_q: torch.Tensor, s_w: torch.Tensor, granularity: str = "vector", integer: bool = True,
    packed: PackedWeight | None = None,
) -> torch.Tensor:
    """``(s_x s_w^T) * (X_q W_q^T)`` for float ``x [M, K]`` and int8 ``W_q [N, K]`` with scales
    ``s_w`` ``[N, 1]`` (vector) or ``[]`` (tensor). ``integer=False`` computes the same thing as a
    float matmul of the dequantized codes (fake quantization). ``packed``: ``W_q`` as the int8
    backend wants it (:func:`ptq.kernels.pack_weight`)."""
    x_q, s_x = absmax_quantize(x, dim=-1 if granularity == "vector" else None)
    return _codes_matmul(x_q, s_x, W_q, s_w, integer, packed)


def _codes_matmul(x_q: torch.Tensor, s_x: torch.Tensor, W_q: torch.Tensor, s_w: torch.Tensor,
                  integer: bool, packed: PackedWeight | None = None) -> torch.Tensor:
    if integer:
        return _rescale(int8_matmul(x_q, W_q, packed=packed), s_x, s_w)
    return (x_q.float() * s_x) @ dequantize_weight(W_q, s_w).t()


def dequantize_weight(W_q: torch.Tensor, s_w: torch.Tensor, W_zero: torch.Tensor | None = None) -> torch.Tensor:
    """``(W_q - W_zero) * s_w`` with ``s_w`` per output row ``[N, 1]`` / ``[N]`` or per tensor ``[]``
    (``W_zero``: per-row int zero points of zeropoint weights, ``None`` for absmax)."""
    return zeropoint_dequantize(W_q, s_w.reshape(-1, 1) if s_w.dim() else s_w,
                                0 if W_zero is None else W_zero.reshape(-1, 1))


def decomposed_matmul(
    x: torch.Tensor, W_q: torch.Tensor, s_w: torch.Tensor, outliers: torch.Tensor, W_outlier: torch.Tensor | None,
    granularity: str = "vector", integer: bool = True, zero_point: bool = False, W_zero: torch.Tensor | None = None,
    c_w: torch.Tensor | None = None, packed: PackedWeight | None = None, x_abs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 7 for ``x [M, K]``: ``outliers`` a boolean mask ``[K]`` or the int64 indices of the
    outlier columns; ``W_outlier [N, |O|]`` their float weight columns (``None``: dequantized
    from ``W_q``, as bitsandbytes does).

    The int8 part quantizes ``x`` with the outlier columns left out of each row's range and
    their codes at the code of 0, so that they contribute nothing; the float part is added to
    the rescaled int32 product in place (``addmm``). ``zero_point=True``: activations are
    quantized per row with a zero point (:mod:`ptq.algorithms.zeropoint`, the paper's
    "zeropoint vector-wise"), ``W_zero`` ``[N, 1]`` are the weights' zero points (``None``:
    absmax weights) and ``c_w`` their precomputed :func:`~ptq.algorithms.zeropoint.weight_correction`.
    ``packed``: ``W_q`` as the int8 backend wants it (:func:`ptq.kernels.pack_weight`).
    ``x_abs``: ``|x|`` when the caller has it already (the dynamic outlier search), so the row
    scales reuse it instead of a second pass; it is overwritten.
    """
    idx = outliers.nonzero().squeeze(1) if outliers.dtype == torch.bool else outliers
    x = x.float()
    if zero_point:
        if granularity != "vector":
            raise ValueError("zeropoint quantization is per row (granularity 'vector')")
        x_q, s_x, z_x = zeropoint_quantize_rows(x.index_fill(1, idx, 0.0) if idx.numel() else x)
        y = zeropoint_matmul(x_q, s_x, z_x, W_q, s_w, W_zero, c_w=c_w, integer=integer, packed=packed)
    elif idx.numel() == 0 and (x_abs is None or granularity != "vector"):
        return int8_matmul_dequant(x, W_q, s_w, granularity, integer, packed)
    else:
        a = x.abs() if x_abs is None else x_abs
        if idx.numel():
            a.index_fill_(1, idx, 0.0)
        s_x = absmax_scale(a.amax(dim=-1, keepdim=True) if granularity == "vector" else a.amax())
        x_q = quantize_symmetric(x, s_x)
        if idx.numel():
            x_q.index_fill_(1, idx, 0)  # outlier columns contribute nothing here
        y = _codes_matmul(x_q, s_x, W_q, s_w, integer, packed)
    if idx.numel():
        if W_outlier is None:
            W_outlier = dequantize_weight(W_q.index_select(1, idx), s_w, W_zero)
        y.addmm_(x.index_select(1, idx), W_outlier.t())
    return y
