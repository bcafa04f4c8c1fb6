"""Observer ``meanabs-per-channel``: mean |x| per input channel, with the running max.

``s_x[j] = sum_t |x_t[j]| / N`` over every value ``t`` of channel ``j`` seen, kept as a float64
running sum and the count (merging adds both). This is AWQ's activation magnitude (Lin et al.,
MLSys 2024, §3.2: the per-channel scale ``s = s_x^alpha``; ``get_act_scale`` in the reference
code, ``x.abs().view(-1, x.shape[-1]).mean(0)``). Like ``rms-per-channel`` it keeps ``absmax_j``
too, and its ``range()`` is that symmetric ``(-absmax, absmax)``: the mean is a typical size,
not a range.
"""
from __future__ import annotations

import torch

from calibration.observers.absmax import AbsMaxObserver
from calibration.observers.base import Observer
from calibration.observers.registry import register_observer


@register_observer("meanabs-per-channel")
class MeanAbsObserver(AbsMaxObserver):
    """Running mean |x| (:attr:`meanabs`) and max |x| (:attr:`absmax`) along ``axis`` (default ``-1``)."""

    def _reset_state(self) -> None:
        super()._reset_state()
        self._sumabs: torch.Tensor | None = None

    @property
    def meanabs(self) -> torch.Tensor:
        """``mean |x|`` per channel, float32 ``[channels]`` (``[]`` with ``axis=None``)."""
        self._check_nonempty()
        assert self._sumabs is not None
        m = (self._sumabs / int(self.count)).float()
        return m.reshape(()) if self.axis is None else m

    def _update(self, v: torch.Tensor) -> None:
        super()._update(v)
        s = v.double().abs().sum(dim=1)
        self._sumabs = s if self._sumabs is None else self._sumabs + s

    def _merge(self, other: Observer) -> None:
        super()._merge(other)
        assert isinstance(other, MeanAbsObserver) and other._sumabs is not None and self._sumabs is not None
        self._sumabs = self._sumabs + other._sumabs.to(self._sumabs.device)
