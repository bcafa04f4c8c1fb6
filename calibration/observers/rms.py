"""Observer ``rms-per-channel``: root mean square of |x| per input channel, with the running max.

``rms_j = sqrt(sum_t x_t[j]^2 / N)`` over every value ``t`` of channel ``j`` seen, kept as a
float64 running sum of squares and the count (merging adds both: exact up to the order of the
float64 sums). The observer also keeps ``absmax_j`` as ``absmax-per-channel`` does, and its
``range()`` is that symmetric ``(-absmax, absmax)``: the RMS is a typical magnitude, not a range.

Why a typical magnitude: SmoothQuant's Eq. 4 (Xiao et al., 2023, §4) balances ``max|X_j|``,
which is the range a per-tensor *static* activation scale has to cover. Per-token *dynamic*
scales are set by each token's own largest value, so a channel costs the typical token its
typical size; a rare spike (a massive-activation token, |x| in the thousands at an MLP
down-projection) sets ``max|X_j|`` alone and makes SmoothQuant migrate a channel that most
tokens hardly use. ``SmoothQuantStep(act_stat="rms")`` smooths with ``rms_j`` instead.
"""
from __future__ import annotations

import torch

from calibration.observers.absmax import AbsMaxObserver
from calibration.observers.base import Observer
from calibration.observers.registry import register_observer


@register_observer("rms-per-channel")
class RMSObserver(AbsMaxObserver):
    """Running RMS (:attr:`rms`) and max |x| (:attr:`absmax`) along ``axis`` (default ``-1``)."""

    def _reset_state(self) -> None:
        super()._reset_state()
        self._sumsq: torch.Tensor | None = None

    @property
    def rms(self) -> torch.Tensor:
        """``sqrt(mean x^2)`` per channel, float32 ``[channels]`` (``[]`` with ``axis=None``)."""
        self._check_nonempty()
        assert self._sumsq is not None
        r = (self._sumsq / int(self.count)).sqrt().float()
        return r.reshape(()) if self.axis is None else r

    def _update(self, v: torch.Tensor) -> None:
        super()._update(v)
        sq = v.double().pow(2).sum(dim=1)
        self._sumsq = sq if self._sumsq is None else self._sumsq + sq

    def _merge(self, other: Observer) -> None:
        super()._merge(other)
        assert isinstance(other, RMSObserver) and other._sumsq is not None and self._sumsq is not None
        self._sumsq = self._sumsq + other._sumsq.to(self._sumsq.device)
