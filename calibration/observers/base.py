"""The :class:`Observer` base class: a running statistic of a tensor stream that gives a range.

An observer is fed tensors with :meth:`Observer.update` (e.g. a linear layer's input
activations ``[batch, seq, features]``), can be combined with another observer that saw a
different stream with :meth:`Observer.merge`, and turns what it saw into a range
``[xmin, xmax]`` and quantization parameters (:func:`ptq.qparams.compute_qparams`), as the
``torch.ao.quantization`` observers do (``forward`` / ``calculate_qparams``).

``axis=None`` keeps per-tensor statistics; an integer ``axis`` (negative allowed) keeps that
axis as channels and reduces over all the others. Every input is cast to float32 (float16 and
bfloat16 give the statistics of their float32 values); NaN or inf raises ``ValueError``.
State is kept as tensors (counts, sums, min, max, histograms) so that it can later be
all-reduced with ``torch.distributed``.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ptq.qparams import compute_qparams
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError
from ptq.kernels.finite import all_finite


class Observer:
    """Base class; subclasses implement ``_reset_state``, ``_update``, ``_merge``, ``_range``.

    Attributes:
        axis: the channel axis, or ``None`` for per-tensor statistics.
        channels: number of channels (1 per tensor), known after the first non-empty update.
        count: number of values seen per channel (int64 scalar tensor).
    """

    name: str = ""  # set by :func:`calibration.observers.register_observer`

    def __init__(self, axis: int | None = None) -> None:
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise PTQUserError(f"axis must be an integer or None, got {axis!r}")
        self.axis = axis
        self.reset()

    # ----------------------------------------------------------------- subclass hooks
    def _reset_state(self) -> None:
        raise NotImplementedError

    def _update(self, v: torch.Tensor) -> None:
        """Accumulate ``v``: float32, finite, shape ``[channels, n]``."""
        raise NotImplementedError

    def _merge(self, other: "Observer") -> None:
        """Combine with ``other`` (same type, config and channels; both non-empty)."""
        raise NotImplementedError

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(xmin, xmax)`` as float32 tensors of shape ``[channels]``."""
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """Constructor arguments other than ``axis`` that must agree for a merge."""
        return {}

    # ----------------------------------------------------------------- public interface
    def reset(self) -> None:
        """Forget everything seen so far."""
        self.channels: int | None = None
        self.count = torch.zeros((), dtype=torch.int64)
        self._reset_state()

    def _values(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}.update expects a torch.Tensor, got {type(x).__name__}")
        if x.is_complex():
            raise PTQUserError("observers do not support complex tensors")
        xf = x.detach().float()
        if not all_finite(xf):
            bad = "NaN" if torch.isnan(xf).any() else "inf"
            raise PTQUserError(f"observer input contains {bad}; observers need finite values (no NaN or inf)")
        if self.axis is None:
            return xf.reshape(1, -1)
        if xf.dim() == 0 or not -xf.dim() <= self.axis < xf.dim():
            raise PTQUserError(f"axis {self.axis} is out of range for an input of shape {tuple(x.shape)}")
        return xf.movedim(self.axis, 0).reshape(xf.shape[self.axis], -1)

    def update(self, x: torch.Tensor) -> None:
        """Accumulate the statistics of ``x`` (any float dtype; an empty tensor is ignored)."""
        v = self._values(x)
        if v.numel() == 0:
            return
        if self.channels is None:
            self.channels = v.shape[0]
        elif v.shape[0] != self.channels:
            raise PTQUserError(
                f"{type(self).__name__} expected {self.channels} channels along axis {self.axis}, got {v.shape[0]}"
            )
        self._update(v)
        self.count += v.shape[1]

    def merge(self, other: "Observer") -> "Observer":
        """Add the statistics of ``other`` (same type, axis, config and channels); returns ``self``."""
        if type(other) is not type(self):
            raise PTQUserError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        if other.axis != self.axis:
            raise PTQUserError(f"cannot merge observers with different axes ({self.axis} and {other.axis})")
        if other._config() != self._config():
            raise PTQUserError(f"cannot merge observers with different settings ({self._config()} and {other._config()})")
        if int(other.count) == 0:
            return self
        if int(self.count) == 0:
            self.__dict__.update(copy.deepcopy(other.__dict__))
            return self
        if other.channels != self.channels:
            raise PTQUserError(f"cannot merge observers with {self.channels} and {other.channels} channels")
        self._merge(other)
        self.count += other.count
        return self

    def _check_nonempty(self) -> None:
        if int(self.count) == 0:
            raise PTQUserError(f"{type(self).__name__}: observer has seen no data; call update(x) first")

    def _shaped(self, xmin: torch.Tensor, xmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xmin, xmax = xmin.float(), xmax.float()
        if self.axis is None:
            return xmin.reshape(()), xmax.reshape(())
        return xmin, xmax

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(xmin, xmax)``, float32, shape ``[]`` per tensor or ``[channels]`` per channel."""
        self._check_nonempty()
        return self._shaped(*self._range())

    def _qparams_range(self, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
        return self.range()

    def qparams(self, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero for ``range()``: shape ``[1, 1]`` per tensor, ``[channels, 1]`` per channel.

        Only ``bits``, ``symmetric`` and ``include_zero`` of ``spec`` are used; the observer's
        ``axis`` (not ``spec.granularity``) decides the shape.
        """
        scale, zero = compute_qparams(*self._qparams_range(spec), spec)
        return scale.reshape(-1, 1), zero.reshape(-1, 1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {"axis": self.axis, **self._config()}.items())
        return f"{type(self).__name__}({args})"
