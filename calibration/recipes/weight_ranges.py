"""Quantization parameters of a weight from a registered observer.

An observer name that is also a registered qparams chooser (``minmax``, ``mse``: GPTQ's
shrink search; :mod:`ptq.choosers`) is that chooser on the weight directly, and ``percentile`` takes the exact per-unit quantile of |W| (a weight is small
enough that the observers' bounded-memory histograms are not needed).

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
from ptq.choosers import get_qparams, qparams_names
from ptq.qparams import compute_qparams, grouped_view
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError


def weight_qparams(
    W: torch.Tensor, spec: QuantSpec, observer: str = "minmax", observer_args: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero of a ``[out, in]`` weight, shaped as the spec says (:mod:`ptq.spec`)."""
    args = dict(observer_args or {})
    if observer in qparams_names() and not get_qparams(observer).uses_importance \
            and set(args) <= set(get_qparams(observer).options):
        return get_qparams(observer)(W, spec, **args)
    units = grouped_view(W.float(), spec)
    out_shape = units.shape[:-1] if spec.granularity == "group" else (units.shape[0], 1)
    units = units.reshape(-1, units.shape[-1])
    if observer == "percentile" and set(args) <= {"percentile"}:
        q = float(args.get("percentile", 99.99)) / 100
        if not 0 < q <= 1:
            raise PTQUserError(f"percentile must be in (0, 100], got {q * 100}")
        t = torch.quantile(units.abs(), q, dim=1)
        xmax = units.amax(dim=1).clamp(max=t)
        xmin = torch.minimum(units.amin(dim=1).clamp(min=-t), xmax)
        scale, zero = compute_qparams(xmin, xmax, dataclasses.replace(spec, granularity="channel", group_size=None))
        return scale.reshape(out_shape), zero.reshape(out_shape)
    obs = make_observer(observer, axis=0, **(observer_args or {}))
    obs.update(units)
    unit_spec = dataclasses.replace(spec, granularity="channel", group_size=None)
    scale, zero = obs.qparams(unit_spec)
    return scale.reshape(out_shape), zero.reshape(out_shape)
