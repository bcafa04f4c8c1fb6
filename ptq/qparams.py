"""Quantization parameters (scale, zero) from a range ``[xmin, xmax]``.

Asymmetric (GPTQ reference, ``Quantizer.find_params``)::

    scale = (xmax - xmin) / maxq,     zero = round(-xmin / scale)

Symmetric (same reference)::

    xmax = max(|xmin|, |xmax|),  xmin = -xmax,  scale = 2 xmax / maxq,  zero = (maxq + 1) / 2

With ``include_zero`` the range is first stretched to contain 0 and the zero point is a
code in ``[0, maxq]``; without it, a range that excludes 0 gets a zero point outside the
codes (so the grid still covers the range; such zeros cannot be bit-packed). A constant
unit (``xmin == xmax == c != 0``) gets ``scale = |c|`` so that ``c`` is reconstructed
exactly; an all-zero range becomes ``[-1, 1]`` as in the reference, so scales are never 0
or NaN. Scales and zeros are float32.
"""
from __future__ import annotations

import torch

from ptq.spec import QuantSpec


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        bad = "NaN" if torch.isnan(t).any() else "inf"
        raise ValueError(f"{what} contains {bad}; quantization needs finite values")


def compute_qparams(
    xmin: torch.Tensor, xmax: torch.Tensor, spec: QuantSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero (float32, same shape as ``xmin``) for ranges ``[xmin, xmax]``."""
    xmin = torch.as_tensor(xmin).float()
    xmax = torch.as_tensor(xmax).float()
    _check_finite(xmin, "the range minimum")
    _check_finite(xmax, "the range maximum")
    if (xmin > xmax).any():
        raise ValueError("range minimum is larger than its maximum")
    maxq = spec.maxq
    constant = (xmin == xmax) & (xmin != 0)  # one non-zero value c: made exact below
    c = xmin.clone()
    if spec.include_zero:
        xmin = xmin.clamp(max=0)
        xmax = xmax.clamp(min=0)
    if spec.symmetric:
        xmax = torch.maximum(xmin.abs(), xmax.abs())
        xmin = -xmax
    degenerate = xmin == xmax
    xmin = torch.where(degenerate, xmin.clamp(max=0), xmin)
    xmax = torch.where(degenerate, xmax.clamp(min=0), xmax)
    all_zero = (xmin == 0) & (xmax == 0)
    xmin = torch.where(all_zero, torch.full_like(xmin, -1.0), xmin)
    xmax = torch.where(all_zero, torch.full_like(xmax, 1.0), xmax)
    scale = (xmax - xmin) / maxq
    tiny = torch.finfo(torch.float32).tiny
    scale = scale.clamp(min=tiny)
    if spec.symmetric:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
        if spec.include_zero:  # 0 is inside the range, so the zero point is a valid code
            zero = zero.clamp(0, maxq)
    # A constant value c: scale |c| puts it exactly on the grid, one code away from the zero
    # point (code 1 with zero 0 for c > 0, code 0 with zero 1 for c < 0).
    scale = torch.where(constant, c.abs(), scale)
    if spec.scale_dtype == "float16":  # a float16 value, so that float16 storage is lossless
        scale = scale.clamp(min=2.0**-24, max=65504.0).half().float()
        if not spec.symmetric:
            zero = torch.round(-xmin / scale)
            zero = zero.clamp(0, maxq) if spec.include_zero else zero
    if not spec.symmetric:
        zero = torch.where(constant, (c < 0).float(), zero)
    return scale, zero


def grouped_view(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """View a 2-D ``[rows, cols]`` tensor so that each (scale, zero) owns one last-axis row.

    tensor: ``[1, rows*cols]``; channel: ``[rows, cols]``; group: ``[rows, cols/g, g]``.
    """
    if x.dim() != 2:
        raise ValueError(f"expected a 2-D [out_features, in_features] tensor, got shape {tuple(x.shape)}")
    if spec.granularity == "tensor":
        return x.reshape(1, -1)
    if spec.granularity == "channel":
        return x
    spec.check_shape(x.shape[1])
    return x.reshape(x.shape[0], x.shape[1] // spec.group_size, spec.group_size)


def reduce_minmax(x: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(scale, zero) min and max of a 2-D tensor, shapes as in :mod:`ptq.spec`."""
    v = grouped_view(x, spec).float()
    _check_finite(v, "the tensor to quantize")
    xmin, xmax = v.amin(dim=-1), v.amax(dim=-1)
    if spec.granularity != "group":
        xmin, xmax = xmin.reshape(-1, 1), xmax.reshape(-1, 1)
    return xmin, xmax


def minmax_qparams(x: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max (round-to-nearest) scale and zero of a 2-D weight."""
    return compute_qparams(*reduce_minmax(x, spec), spec)


def mse_qparams(
    x: torch.Tensor, spec: QuantSpec, grid: int = 100, maxshrink: float = 0.8, norm: float = 2.4,
    column_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero of a 2-D weight whose range is shrunk to minimise the quantization error.

    As the GPTQ reference's ``Quantizer.find_params(mse=True)`` (IST-DASLab/gptq,
    ``quant.py``; Frantar et al., "GPTQ", ICLR 2023): for every ``(scale, zero)`` unit with
    min-max range ``[xmin, xmax]`` and each ``i in range(int(maxshrink * grid))``::

        p = 1 - i / grid,   (scale, zero) = compute_qparams(p * xmin, p * xmax, spec)
        err(p) = sum_j |fake_quant(x_j; scale, zero) - x_j| ** norm

    and the candidate with the smallest ``err`` is kept per unit (strictly smaller wins, so
    ties keep the larger range). ``p = 1`` is min-max, so the result is never worse than
    :func:`minmax_qparams` in this norm. Shapes as :func:`minmax_qparams`.

    ``column_weight`` ``[cols]`` (non-negative) weighs each column's error,
    ``err(p) = sum_j c_j |q_j - x_j| ** norm``: with ``c = diag(H)``, the inputs' energy per
    channel (llama.cpp's "importance matrix"), the range is fitted where the layer's inputs
    are large rather than uniformly over the row.
    """
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    if not 0 < maxshrink <= 1:
        raise ValueError(f"maxshrink must be in (0, 1], got {maxshrink!r}")
    if not norm > 0:
        raise ValueError(f"norm must be positive, got {norm!r}")
    xmin, xmax = reduce_minmax(x, spec)
    out_shape = xmin.shape
    units = grouped_view(x, spec).float()
    units = units.reshape(-1, units.shape[-1])
    weight = None
    if column_weight is not None:
        if column_weight.shape != (x.shape[1],) or not bool((column_weight >= 0).all()):
            raise ValueError(f"column_weight must be non-negative of shape [{x.shape[1]}], got "
                             f"{tuple(column_weight.shape)}")
        weight = grouped_view(column_weight.float().expand(x.shape), spec).reshape(units.shape)
    xmin, xmax = xmin.reshape(-1), xmax.reshape(-1)
    best_scale, best_zero = compute_qparams(xmin, xmax, spec)
    best_err = torch.full_like(xmin, float("inf"))
    for i in range(max(1, int(maxshrink * grid))):
        p = 1 - i / grid
        scale, zero = compute_qparams(p * xmin, p * xmax, spec)
        s, z = scale.unsqueeze(1), zero.unsqueeze(1)
        q = torch.clamp(torch.round(units / s) + z, 0, spec.maxq)
        err = (s * (q - z) - units).abs_().pow_(norm)
        err = (err if weight is None else err.mul_(weight)).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
    return best_scale.reshape(out_shape), best_zero.reshape(out_shape)
