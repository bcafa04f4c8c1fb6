"""Observer ``absmax-per-channel``: running max |x| per input channel.

``absmax_j = max_t max_i |x_t[i, j]|`` over every update, with the channel axis ``-1`` by
default (the last, ``in_features``, axis of a linear layer's input ``[batch, seq, features]``).
This is the activation statistic of SmoothQuant (Xiao et al., 2023, §4: the smoothing factor
``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)``) and of LLM.int8() (Dettmers et al., 2022, §3.2:
outlier feature dimensions are the columns with ``max|X_j| >= threshold``, 6.0).
``range()`` is the symmetric ``(-absmax, absmax)``; merging takes the maximum (exact).
"""
from __future__ import annotations

import torch

from calibration.observers.base import Observer
from ptq.errors import PTQUserError
from calibration.observers.registry import register_observer


@register_observer("absmax-per-channel")
class AbsMaxObserver(Observer):
    """Running max |x| along ``axis`` (default ``-1``); see :attr:`absmax`."""

    def __init__(self, axis: int | None = -1) -> None:
        super().__init__(axis)

    def _reset_state(self) -> None:
        self._absmax: torch.Tensor | None = None

    @property
    def absmax(self) -> torch.Tensor:
        """Max |x| seen, float32, ``[channels]`` (``[]`` with ``axis=None``)."""
        self._check_nonempty()
        assert self._absmax is not None
        return self._absmax.reshape(()) if self.axis is None else self._absmax

    def update(self, x: torch.Tensor) -> None:
        """As :meth:`Observer.update`; with the channels on the last axis (a linear layer's input) the
        max and min of each column of ``x`` viewed as ``[tokens, channels]`` are taken in place, with no
        transposed float32 copy, and a NaN / inf is found in the reduced ``[channels]`` (max and min keep it)."""
        if not (isinstance(x, torch.Tensor) and x.dim() >= 2 and self.axis in (-1, x.dim() - 1)
                and x.is_floating_point() and x.numel() > 0
                and type(self)._update is AbsMaxObserver._update):  # subclasses keeping more go the general way
            return super().update(x)
        rows = x.detach().reshape(-1, x.shape[-1])
        a = torch.maximum(rows.amax(dim=0), rows.amin(dim=0).neg_()).float()  # NaN propagates through both
        if not bool(torch.isfinite(a).all()):
            bad = "NaN" if bool(torch.isnan(a).any()) else "inf"
            raise PTQUserError(f"observer input contains {bad}; observers need finite values (no NaN or inf)")
        if self.channels is None:
            self.channels = a.shape[0]
        elif a.shape[0] != self.channels:
            raise PTQUserError(
                f"{type(self).__name__} expected {self.channels} channels along axis {self.axis}, got {a.shape[0]}"
            )
        self._absmax = a if self._absmax is None else torch.maximum(self._absmax, a)
        self.count += rows.shape[0]

    def _update(self, v: torch.Tensor) -> None:
        a = v.abs().amax(dim=1)
        self._absmax = a if self._absmax is None else torch.maximum(self._absmax, a)

    def _merge(self, other: Observer) -> None:
        assert isinstance(other, AbsMaxObserver) and other._absmax is not None and self._absmax is not None
        self._absmax = torch.maximum(self._absmax, other._absmax.to(self._absmax.device))

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._absmax is not None
        return -self._absmax, self._absmax.clone()
