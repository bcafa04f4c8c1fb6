"""Observer ``mse``: the clipping range that minimises the expected quantization error.

A signed fixed-bin histogram over ``[-bound, bound]`` (:mod:`calibration.observers.histogram`)
plus the running ``[min, max]``. For a :class:`ptq.QuantSpec` the range is searched on the
GPTQ reference's grid of shrink factors (``Quantizer.find_params(mse=True)``,
IST-DASLab/gptq ``quant.py``; cf. torch.ao ``HistogramObserver._non_linear_param_search``)::

    for i in range(int(maxshrink * grid)):  p = 1 - i / grid
        (scale, zero) = compute_qparams(p * min, p * max, spec)
        err(p) = sum_b n_b * |fake_quant(c_b; scale, zero) - c_b| ** norm

with ``c_b`` the bin centres and ``n_b`` their counts: values beyond the clipped range
contribute their clipping error through the clamp of ``fake_quant``. The ``p`` with the
smallest error wins (ties keep the larger range; ``p = 1`` is min-max). ``norm = 2`` (MSE)
by default. ``range(spec)`` needs a spec; without one it uses 8-bit asymmetric.
"""
from __future__ import annotations

import torch

from calibration.observers.base import Observer
from calibration.observers.histogram import Histogram
from calibration.observers.minmax import MinMaxObserver
from calibration.observers.registry import register_observer
from ptq.qparams import compute_qparams
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError

DEFAULT_SPEC = QuantSpec(bits=8, symmetric=False, granularity="channel")


@register_observer("mse")
class MSEObserver(MinMaxObserver):
    """Running min / max plus a signed ``bins``-bin histogram; range by error search."""

    def __init__(
        self, axis: int | None = None, bins: int = 2048, grid: int = 100, maxshrink: float = 0.8, norm: float = 2.0
    ) -> None:
        Histogram(bins, signed=True)  # validates bins
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise PTQUserError(f"grid must be a positive integer, got {grid!r}")
        if isinstance(maxshrink, bool) or not isinstance(maxshrink, (int, float)) or not 0 < maxshrink <= 1:
            raise PTQUserError(f"maxshrink must be a number in (0, 1], got {maxshrink!r}")
        if isinstance(norm, bool) or not isinstance(norm, (int, float)) or not norm > 0:
            raise PTQUserError(f"norm must be a positive number, got {norm!r}")
        self.bins, self.grid, self.maxshrink, self.norm = bins, grid, float(maxshrink), float(norm)
        super().__init__(axis)

    def _config(self) -> dict:
        return {"bins": self.bins, "grid": self.grid, "maxshrink": self.maxshrink, "norm": self.norm}

    def _reset_state(self) -> None:
        super()._reset_state()
        self.hist = Histogram(self.bins, signed=True)

    def _update(self, v: torch.Tensor) -> None:
        super()._update(v)
        self.hist.add(v)

    def _merge(self, other: Observer) -> None:
        assert isinstance(other, MSEObserver)
        super()._merge(other)
        self.hist.merge(other.hist)

    def expected_error(self, xmin: torch.Tensor, xmax: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
        """``sum_b n_b |fake_quant(c_b) - c_b| ** norm`` per channel for ranges ``[xmin, xmax]``."""
        assert self.hist.counts is not None
        return self._error(self.hist.centres().float(), self.hist.counts.float(), xmin, xmax, spec)

    def _error(self, c: torch.Tensor, n: torch.Tensor, xmin: torch.Tensor, xmax: torch.Tensor,
               spec: QuantSpec) -> torch.Tensor:
        scale, zero = compute_qparams(xmin.reshape(-1), xmax.reshape(-1), spec)
        s, z = scale[:, None].to(c.device), zero[:, None].to(c.device)
        q = torch.clamp(torch.round(c / s) + z, 0, spec.maxq)
        return ((s * (q - z) - c).abs_().pow_(self.norm) * n).sum(dim=1)

    def range(self, spec: QuantSpec | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The searched ``(xmin, xmax)`` for ``spec`` (default: 8-bit asymmetric)."""
        self._check_nonempty()
        assert self.hist.counts is not None
        spec = spec or DEFAULT_SPEC
        lo, hi = super()._range()
        c, n = self.hist.centres().float(), self.hist.counts.float()
        best_err = torch.full(lo.shape, float("inf"), device=lo.device)
        best_p = torch.ones_like(lo)
        for i in range(max(1, int(self.maxshrink * self.grid))):
            p = 1 - i / self.grid
            err = self._error(c, n, p * lo, p * hi, spec).to(lo.device)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_p = torch.where(better, torch.full_like(best_p, p), best_p)
        return self._shaped(best_p * lo, best_p * hi)

    def _qparams_range(self, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
        return self.range(spec)
