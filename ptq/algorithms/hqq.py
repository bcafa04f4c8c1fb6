"""HQQ weight quantization on one tensor: :func:`hqq` (the math is :mod:`ptq.choosers.hqq`).

``hqq(W, spec)`` is round-to-nearest on the grid whose zero points HQQ's half-quadratic solver
chose (Badri & Shaji, 2023); no calibration data. For RTN / GPTQ inside a recipe use
``qparams="hqq"``.
"""
from __future__ import annotations

import dataclasses

import torch

from ptq.algorithms.result import QuantizedWeight
from ptq.algorithms.rtn import rtn
from ptq.choosers.hqq import hqq_qparams
from ptq.spec import QuantSpec


def hqq(W: torch.Tensor, spec: QuantSpec, lp_norm: float = 0.7, beta: float = 10.0, kappa: float = 1.01,
        iters: int = 20) -> QuantizedWeight:
    """Quantize ``W [out, in]`` with HQQ's zero points (float32 result).

    An integer-zero ``spec`` (the default ``zero_dtype="int"``) is switched to float16 zeros, the
    reference's storage; pass ``zero_dtype="float32"`` to keep them exact or an explicit
    ``"int"``-zero spec through :func:`ptq.choosers.hqq.hqq_qparams` to round them.
    """
    if not spec.float_zero:
        spec = dataclasses.replace(spec, zero_dtype="float16")
    scale, zero = hqq_qparams(W, spec, lp_norm=lp_norm, beta=beta, kappa=kappa, iters=iters)
    return rtn(W, spec, scale, zero)
