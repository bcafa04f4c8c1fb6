"""Round-to-nearest (RTN) weight quantization.

``Q = scale * (clamp(round(W / scale) + zero, 0, maxq) - zero)`` with one ``(scale, zero)``
per tensor, output channel or group, computed from the weight's own range (min-max) unless
given (e.g. by a percentile or MSE observer). The baseline of every PTQ paper.

For the 4-bit code books (``spec.format`` ``nf4`` / ``fp4``, :mod:`ptq.codebook`) it is
QLoRA's blockwise absmax quantization, ``Q = CODE[q] * absmax`` (absmax double-quantized when
``spec.double_quant``); ``scale`` is then the exact absmax per block and ``zero`` is all zeros.
"""
from __future__ import annotations

from typing import Any

import torch

from ptq.algorithms.result import QuantizedWeight
from ptq.choosers import get_qparams
from ptq.codebook import absmax_quantize, codebook_dequantize, used_absmax
from ptq.qparams import minmax_qparams
from ptq.quantize import dequantize, quantize
from ptq.spec import QuantSpec


def rtn(
    W: torch.Tensor,
    spec: QuantSpec,
    scale: torch.Tensor | None = None,
    zero: torch.Tensor | None = None,
    codes: torch.Tensor | None = None,
) -> QuantizedWeight:
    """Quantize a ``[out, in]`` weight to the nearest grid point (float32 result).

    ``codes``: the codes on the grid ``(scale, zero)`` when a format's own rounding chose them
    (a chooser's ``rounding``, e.g. llama.cpp's ``Q4_0``); nearest rounding otherwise.
    """
    W = W.float()
    if spec.codebook:
        codes, absmax = absmax_quantize(W, spec)
        Q = codebook_dequantize(codes, used_absmax(absmax, spec), spec)
        return QuantizedWeight(weight=Q, scale=absmax, zero=torch.zeros_like(absmax), spec=spec,
                               loss=float((W - Q).pow(2).sum()))
    if scale is None or zero is None:
        scale, zero = minmax_qparams(W, spec)
    if codes is None:
        codes = quantize(W, scale, zero, spec)
    Q = dequantize(codes, scale, zero, spec)
    return QuantizedWeight(weight=Q, scale=scale, zero=zero, spec=spec, loss=float((W - Q).pow(2).sum()))


def rtn_qparams(W: torch.Tensor, spec: QuantSpec, qparams: str = "minmax", **options: Any) -> QuantizedWeight:
    """RTN on the grid of the registered chooser ``qparams`` (:mod:`ptq.choosers`), rounded by the
    chooser's own ``rounding`` when it has one (``q4_0``: byte for byte the ``gguf`` package's ``Q4_0``)."""
    chooser = get_qparams(qparams)
    scale, zero = chooser(W.float(), spec, **options)
    codes = chooser.rounding(W.float(), spec) if chooser.rounding is not None else None
    return rtn(W, spec, scale, zero, codes=codes)
