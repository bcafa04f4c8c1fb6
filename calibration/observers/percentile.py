"""Observer ``percentile``: clip the range at a percentile of |x|.

``t = quantile(|x|, percentile / 100)`` per tensor or channel, read off a fixed-bin histogram
of |x| (:mod:`calibration.observers.histogram`, memory ``[channels, bins]`` whatever the
stream length) with linear interpolation inside the bin; the range is the observed
``[min, max]`` intersected with ``[-t, t]``::

    xmin = max(min(x), -t),   xmax = min(max(x), t)

(clamped so that ``xmin <= xmax``). Percentile calibration as in torch.ao's
``HistogramObserver`` family and Wu et al., "Integer Quantization for Deep Learning
Inference" (2020), §4.2 (99.9 / 99.99 percentiles).
"""
from __future__ import annotations

import torch

from calibration.observers.base import Observer
from calibration.observers.histogram import Histogram
from calibration.observers.minmax import MinMaxObserver
from calibration.observers.registry import register_observer
from ptq.errors import PTQUserError


@register_observer("percentile")
class PercentileObserver(MinMaxObserver):
    """Running min / max plus a ``bins``-bin histogram of |x| per channel."""

    def __init__(self, axis: int | None = None, percentile: float = 99.99, bins: int = 2048) -> None:
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
            raise PTQUserError(f"percentile must be a number in (0, 100], got {percentile!r}")
        Histogram(bins, signed=False)  # validates bins
        self.percentile = float(percentile)
        self.bins = bins
        super().__init__(axis)

    def _config(self) -> dict:
        return {"percentile": self.percentile, "bins": self.bins}

    def _reset_state(self) -> None:
        super()._reset_state()
        self.hist = Histogram(self.bins, signed=False)

    def _update(self, v: torch.Tensor) -> None:
        super()._update(v)
        self.hist.add(v)

    def _merge(self, other: Observer) -> None:
        assert isinstance(other, PercentileObserver)
        super()._merge(other)
        self.hist.merge(other.hist)

    @property
    def threshold(self) -> torch.Tensor:
        """``t``, the ``percentile``-th percentile of |x| (float32, ``[channels]`` or ``[]``)."""
        self._check_nonempty()
        t = self.hist.quantile(self.percentile / 100).float()
        return t.reshape(()) if self.axis is None else t

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = super()._range()
        t = self.hist.quantile(self.percentile / 100).float().to(lo.device)
        xmax = torch.minimum(hi, torch.maximum(t, lo))
        xmin = torch.maximum(lo, torch.minimum(-t, hi))
        return xmin, xmax
