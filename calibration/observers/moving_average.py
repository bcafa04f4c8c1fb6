"""Observer ``moving-average``: exponential moving average of per-batch min and max.

As ``torch.ao.quantization.MovingAverageMinMaxObserver`` (and its per-channel variant): the
first update sets ``min_val, max_val`` to the batch's min / max, each later one does::

    min_val += momentum * (min(x) - min_val),   max_val += momentum * (max(x) - max_val)

with ``momentum = 0.01`` by default (torch.ao's ``averaging_constant``).

Merging: an EMA depends on the order of the batches, so no merge equals one observer that
saw both streams. The convention here is the average of the two states weighted by the
number of values each saw, ``(n_a * m_a + n_b * m_b) / (n_a + n_b)``; merging with an empty
observer leaves the state unchanged (and merging into an empty one copies the other).
"""
from __future__ import annotations

import torch

from calibration.observers.base import Observer
from calibration.observers.minmax import MinMaxObserver
from calibration.observers.registry import register_observer
from ptq.errors import PTQUserError


@register_observer("moving-average")
class MovingAverageMinMaxObserver(MinMaxObserver):
    """EMA of per-batch min / max with ``momentum`` in (0, 1]."""

    def __init__(self, axis: int | None = None, momentum: float = 0.01) -> None:
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 < momentum <= 1:
            raise PTQUserError(f"momentum must be a number in (0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        super().__init__(axis)

    def _config(self) -> dict:
        return {"momentum": self.momentum}

    def _fold(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.min_val is not None and self.max_val is not None
        return self.min_val + self.momentum * (lo - self.min_val), self.max_val + self.momentum * (hi - self.max_val)

    def _merge(self, other: Observer) -> None:
        assert isinstance(other, MovingAverageMinMaxObserver)
        assert self.min_val is not None and self.max_val is not None
        assert other.min_val is not None and other.max_val is not None
        n_a, n_b = float(self.count), float(other.count)
        w_a, w_b = n_a / (n_a + n_b), n_b / (n_a + n_b)
        self.min_val = w_a * self.min_val + w_b * other.min_val.to(self.min_val.device)
        self.max_val = w_a * self.max_val + w_b * other.max_val.to(self.max_val.device)
