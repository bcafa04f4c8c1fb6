"""The result of quantizing one weight matrix."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ptq.spec import QuantSpec


@dataclass
class QuantizedWeight:
    """A weight ``[out, in]`` on its grid, with what a checkpoint needs to store it.

    ``weight`` is the dequantized (fake-quantized) float32 weight; ``scale`` / ``zero`` have
    the spec's shapes (:mod:`ptq.spec`); ``g_idx[j]`` is the group of input column ``j``
    (``None`` when groups are consecutive columns); ``loss`` is the algorithm's own error
    measure (GPTQ: the summed ``(w - q)^2 / d`` of the paper's Eq. 2; RTN: ``||W - Q||_F^2``);
    ``info`` holds algorithm notes (GPTQ: the damping used, dead columns, an RTN fallback).
    """

    weight: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    spec: QuantSpec
    g_idx: torch.Tensor | None = None
    loss: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
