"""Quantize, dequantize and fake-quantize a 2-D tensor with given (scale, zero).

``q = clamp(round(x / scale) + zero, 0, maxq)``, ``x_hat = scale * (q - zero)``; with real-valued
zero points (``spec.zero_dtype`` float, HQQ) ``q = clamp(round(x / scale + zero), 0, maxq)``.
All arithmetic is in float32 whatever the input dtype, so float32, float16 and bfloat16
inputs holding the same values give the same codes; fake-quantize returns the input dtype.
``scale`` / ``zero`` shapes follow :mod:`ptq.spec` (``[1,1]``, ``[rows,1]`` or
``[rows, cols/g]``).
"""
from __future__ import annotations

import torch

from ptq.qparams import _check_finite, minmax_qparams
from ptq.spec import QuantSpec


def expand_qparam(p: torch.Tensor, shape: torch.Size, spec: QuantSpec) -> torch.Tensor:
    """Broadcast a scale or zero of the spec's shape to a ``[rows, cols]`` tensor shape."""
    rows, cols = shape
    if spec.granularity == "group":
        return p.reshape(rows, cols // spec.group_size, 1).expand(-1, -1, spec.group_size).reshape(rows, cols)
    return p.reshape(-1, 1) if spec.granularity == "channel" else p.reshape(1, 1)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Unsigned integer codes (uint8) of a 2-D tensor."""
    if x.dim() != 2:
        raise ValueError(f"expected a 2-D [out_features, in_features] tensor, got shape {tuple(x.shape)}")
    spec.check_shape(x.shape[1])
    xf = x.float()
    _check_finite(xf, "the tensor to quantize")
    s = expand_qparam(scale.float(), x.shape, spec)
    z = expand_qparam(zero.float(), x.shape, spec)
    codes = torch.round(xf / s + z) if spec.float_zero else torch.round(xf / s) + z
    return torch.clamp(codes, 0, spec.maxq).to(torch.uint8)


def dequantize(
    q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, spec: QuantSpec,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``scale * (q - zero)`` in ``dtype``."""
    s = expand_qparam(scale.float(), q.shape, spec)
    z = expand_qparam(zero.float(), q.shape, spec)
    return (s * (q.float() - z)).to(dtype)


def fake_quantize(
    x: torch.Tensor, spec: QuantSpec,
    scale: torch.Tensor | None = None, zero: torch.Tensor | None = None,
) -> torch.Tensor:
    """Round ``x`` to its grid and back (min-max qparams when none are given); dtype kept."""
    if scale is None or zero is None:
        scale, zero = minmax_qparams(x, spec)
    return dequantize(quantize(x, scale, zero, spec), scale, zero, spec, dtype=x.dtype)
