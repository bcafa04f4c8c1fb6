"""Round-to-nearest (RTN) weight quantization.

``Q = scale * (clamp(round(W / scale) + zero, 0, maxq) - zero)`` with one ``(scale, zero)``
per tensor, output channel or group, computed from the weight's own range (min-max) unless
given (e.g. by a percentile or MSE observer). The baseline of every PTQ paper.
"""
from __future__ import annotations

import torch

from ptq.algorithms.result import QuantizedWeight
from ptq.qparams import minmax_qparams
from ptq.quantize import dequantize, quantize
from ptq.spec import QuantSpec


def rtn(
    W: torch.Tensor,
    spec: QuantSpec,
    scale: torch.Tensor | None = None,
    zero: torch.Tensor | None = None,
) -> QuantizedWeight:
    """Quantize a ``[out, in]`` weight to the nearest grid point (float32 result)."""
    W = W.float()
    if scale is None or zero is None:
        scale, zero = minmax_qparams(W, spec)
    Q = dequantize(quantize(W, scale, zero, spec), scale, zero, spec)
    return QuantizedWeight(weight=Q, scale=scale, zero=zero, spec=spec, loss=float((W - Q).pow(2).sum()))
