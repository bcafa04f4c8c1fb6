"""Quantization parameters of a weight from a registered observer.

Each ``(scale, zero)`` unit of a spec (the tensor, an output row, or a group of one row)
becomes one channel of a per-channel observer over a 2-D view of the weight, so any
registered observer (``minmax``, ``percentile``, ``mse``, ...) gives per-tensor,
per-channel or per-group ranges through the same interface.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from calibration.observers import make_observer
from ptq.qparams import grouped_view, minmax_qparams
from ptq.spec import QuantSpec


def weight_qparams(
    W: torch.Tensor, spec: QuantSpec, observer: str = "minmax", observer_args: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero of a ``[out, in]`` weight, shaped as the spec says (:mod:`ptq.spec`)."""
    if observer == "minmax" and not observer_args:
        return minmax_qparams(W, spec)
    units = grouped_view(W.float(), spec)
    out_shape = units.shape[:-1] if spec.granularity == "group" else (units.shape[0], 1)
    units = units.reshape(-1, units.shape[-1])
    obs = make_observer(observer, axis=0, **(observer_args or {}))
    obs.update(units)
    unit_spec = dataclasses.replace(spec, granularity="channel", group_size=None)
    scale, zero = obs.qparams(unit_spec)
    return scale.reshape(out_shape), zero.reshape(out_shape)
