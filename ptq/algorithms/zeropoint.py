"""Zeropoint (asymmetric) int8 quantization of rows, and its exact integer matmul.

LLM.int8() (Dettmers et al., 2022), §2.1 "zeropoint quantization": a row's range
``[lo, hi]`` (widened to hold 0) is mapped onto all 256 int8 codes, so an asymmetric row
(a token's activations, a weight row) loses no half of the grid the way absmax does::

    s = (hi - lo) / 255        z = round(-lo / s) - 128        (the code of 0, in [-128, 127])
    q = clamp(round(x / s) + z, -128, 127)                     x ~ s (q - z)

0 is exact (``q = z``), so columns set to 0 (LLM.int8()'s outlier columns) contribute nothing.
The paper's Table 1 finds "zeropoint vector-wise + decomposition" the most accurate int8
variant. For ``X ~ s_x (Q_x - z_x)`` (per row ``m``) and ``W ~ s_w (Q_w - z_w)`` (per output row
``n``), with ``K`` the inner size, the product is computed exactly in int32::

    (Q_x - z_x)(Q_w - z_w)^T = Q_x Q_w^T - r_x z_w^T - z_x (r_w - K z_w)^T
    r_x[m] = sum_k Q_x[m, k]      r_w[n] = sum_k Q_w[n, k]

one int8 matmul plus two rank-1 corrections, then one float rescale by ``s_x s_w^T``.
"""
from __future__ import annotations

import torch

from ptq.kernels import PackedWeight, int8_matmul, rescale

QMIN, QMAX = -128, 127
LEVELS = 255


def zeropoint_quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int8 codes ``[..., K]``, float32 scales ``[..., 1]`` and int32 zero points ``[..., 1]``,
    one (scale, zero) per row; an all-zero row gets scale 1 and codes equal to its zero point."""
    x = x.float()
    lo = x.amin(dim=-1, keepdim=True).clamp_(max=0.0)
    hi = x.amax(dim=-1, keepdim=True).clamp_(min=0.0)
    span = hi - lo
    scale = torch.where(span > 0, span / LEVELS, torch.ones_like(span))
    zero = torch.round(-lo / scale).sub_(-QMIN)  # round(-lo / s) - 128
    codes = torch.div(x, scale).round_().add_(zero).clamp_(QMIN, QMAX).to(torch.int8)
    return codes, scale, zero.to(torch.int32)


def zeropoint_dequantize(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | int) -> torch.Tensor:
    """``s (q - z)`` as float32 (``scale`` / ``zero`` broadcast against ``codes``; ``zero=0``: absmax codes)."""
    return (codes.to(torch.int32) - zero).float().mul_(scale)


def weight_correction(W_q: torch.Tensor, z_w: torch.Tensor | None) -> torch.Tensor:
    """``r_w - K z_w`` (int32 ``[N]``) of int8 weight codes ``[N, K]`` (``z_w=None``: symmetric weights)."""
    r_w = W_q.sum(dim=1, dtype=torch.int32)
    return r_w if z_w is None else r_w - W_q.shape[1] * z_w.reshape(-1).to(torch.int32)


def zeropoint_matmul(
    x_q: torch.Tensor, s_x: torch.Tensor, z_x: torch.Tensor, W_q: torch.Tensor, s_w: torch.Tensor,
    z_w: torch.Tensor | None, c_w: torch.Tensor | None = None, integer: bool = True,
    packed: PackedWeight | None = None,
) -> torch.Tensor:
    """``(s_x (Q_x - z_x)) (s_w (Q_w - z_w))^T`` for ``x_q [M, K]`` with per-row ``s_x`` / ``z_x`` ``[M, 1]``,
    ``W_q [N, K]`` with per-row ``s_w`` ``[N, 1]`` and ``z_w`` ``[N, 1]`` (``None``: symmetric, 0).

    ``integer=True``: the int32 identity of the module docstring (``c_w`` = :func:`weight_correction`,
    computed here if not given, ``packed`` the int8 backend's form of ``W_q``); ``integer=False``: a
    float matmul of the dequantized values.
    """
    if not integer:
        W = zeropoint_dequantize(W_q, s_w.reshape(-1, 1), 0 if z_w is None else z_w.reshape(-1, 1))
        return zeropoint_dequantize(x_q, s_x, z_x) @ W.t()
    acc = int8_matmul(x_q, W_q, packed=packed)
    if z_w is not None:
        acc.addr_(x_q.sum(dim=1, dtype=torch.int32), z_w.reshape(-1).to(torch.int32), alpha=-1)
    acc.addr_(z_x.reshape(-1), weight_correction(W_q, z_w) if c_w is None else c_w, alpha=-1)
    return rescale(acc, s_x, s_w)
