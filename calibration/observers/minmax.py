"""Observer ``minmax``: running minimum and maximum.

``xmin = min_t min(x_t)``, ``xmax = max_t max(x_t)`` over all updates ``x_t`` (per tensor or
per channel), as ``torch.ao.quantization.MinMaxObserver`` / ``PerChannelMinMaxObserver``.
With an 8-bit asymmetric :class:`ptq.QuantSpec` (``include_zero=True``) the qparams equal
torch.ao's ``quint8`` / ``per_*_affine`` ones (``quant_min=0``, ``quant_max=255``).
Merging takes the elementwise min / max, so it is exact.
"""
from __future__ import annotations

import torch

from calibration.observers.base import Observer
from calibration.observers.registry import register_observer


@register_observer("minmax")
class MinMaxObserver(Observer):
    """Running min / max; ``min_val`` and ``max_val`` are ``[channels]`` float32 tensors."""

    def _reset_state(self) -> None:
        self.min_val: torch.Tensor | None = None
        self.max_val: torch.Tensor | None = None

    def _update(self, v: torch.Tensor) -> None:
        lo, hi = v.amin(dim=1), v.amax(dim=1)
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val, self.max_val = self._fold(lo, hi)

    def _fold(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The state after a batch with per-channel ``lo`` / ``hi`` (here: the running min / max)."""
        assert self.min_val is not None and self.max_val is not None
        return torch.minimum(self.min_val, lo), torch.maximum(self.max_val, hi)

    def _merge(self, other: Observer) -> None:
        assert isinstance(other, MinMaxObserver) and other.min_val is not None and other.max_val is not None
        assert self.min_val is not None and self.max_val is not None
        self.min_val = torch.minimum(self.min_val, other.min_val.to(self.min_val.device))
        self.max_val = torch.maximum(self.max_val, other.max_val.to(self.max_val.device))

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.min_val is not None and self.max_val is not None
        return self.min_val, self.max_val
