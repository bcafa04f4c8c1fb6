"""Quantization parameters (scale, zero) from a range ``[xmin, xmax]``.

Asymmetric (GPTQ reference, ``Quantizer.find_params``)::

    scale = (xmax - xmin) / maxq,     zero = round(-xmin / scale)

Symmetric (same reference)::

    xmax = max(|xmin|, |xmax|),  xmin = -xmax,  scale = 2 xmax / maxq,  zero = (maxq + 1) / 2

With ``include_zero`` the range is first stretched to contain 0. A degenerate range
(``xmin == xmax``) is widened to contain 0, and an all-zero range becomes ``[-1, 1]`` as in
the reference, so scales are never 0 or NaN. Scales and zeros are float32.
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
        zero = torch.round(-xmin / scale).clamp(0, maxq)
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
