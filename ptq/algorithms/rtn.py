"""Round-to-nearest (RTN) weight quantization.

``Q = scale * (clamp(round(W / scale) + zero, 0, maxq) - zero)`` with one ``(scale, zero)``
per tensor, output channel or group, computed from the weight's own range (min-max) unless
given (e.g. by a percentile or MSE observer). The baseline of every PTQ paper.

For the 4-bit code books (``spec.format`` ``nf4`` / ``fp4``, :mod:`ptq.codebook`) it is
QLoRA's blockwise absmax quantization, ``Q = CODE[q] * absmax`` (absmax double-quantized when
``spec.double_quant``); ``scale`` is then the exact absmax per block and ``zero`` is all zeros.
"""
from __future__ import annotations

import torch

from ptq.algorithms.result import QuantizedWeight
from ptq.codebook import absmax_quantize, codebook_dequantize, used_absmax
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
    if spec.codebook:
        codes, absmax = absmax_quantize(W, spec)
        Q = codebook_dequantize(codes, used_absmax(absmax, spec), spec)
        return QuantizedWeight(weight=Q, scale=absmax, zero=torch.zeros_like(absmax), spec=spec,
                               loss=float((W - Q).pow(2).sum()))
    if scale is None or zero is None:
        scale, zero = minmax_qparams(W, spec)
    Q = dequantize(quantize(W, scale, zero, spec), scale, zero, spec)
    return QuantizedWeight(weight=Q, scale=scale, zero=zero, spec=spec, loss=float((W - Q).pow(2).sum()))
