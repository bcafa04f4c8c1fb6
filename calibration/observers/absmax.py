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

    def _update(self, v: torch.Tensor) -> None:
        a = v.abs().amax(dim=1)
        self._absmax = a if self._absmax is None else torch.maximum(self._absmax, a)

    def _merge(self, other: Observer) -> None:
        assert isinstance(other, AbsMaxObserver) and other._absmax is not None and self._absmax is not None
        self._absmax = torch.maximum(self._absmax, other._absmax.to(self._absmax.device))

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._absmax is not None
        return -self._absmax, self._absmax.clone()
