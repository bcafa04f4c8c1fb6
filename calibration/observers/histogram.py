"""Per-channel fixed-bin histograms, memory-bounded, shared by the ``percentile`` and ``mse`` observers.

Each channel has ``bins`` equal bins over ``[lo, hi]`` with ``hi = bound`` and ``lo = -bound``
(``signed``) or ``lo = 0`` (unsigned, a histogram of |x|), where ``bound >= max|x|`` seen.
``bins`` is a power of two, so 0 is a bin edge in both layouts.

Widening (as ``torch.ao.quantization.HistogramObserver._combine_histograms``, which also
upsamples by an integer rate): when a batch exceeds ``bound``, the bound is multiplied by the
smallest power of two ``2**k`` covering it, and every ``2**k`` adjacent old bins fall into
one new bin, so no count is split and the result is exact.

Merging rebins both histograms to the larger bound, spreading each old bin's count over the
new bins it overlaps in proportion to the overlap (uniform density within a bin); exact when
the two bounds are equal or differ by a power of two.
"""
from __future__ import annotations

import torch
from ptq.errors import PTQUserError

_SNAP = 1e-9


def _widen(bound: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
    """Smallest ``bound * 2**k >= need`` (k >= 0) per channel; ``need`` where bound is 0."""
    safe = torch.where(bound > 0, bound, torch.ones_like(bound))
    k = torch.ceil(torch.log2(torch.clamp(need / safe, min=1.0)))
    new = safe * torch.exp2(k)
    new = torch.where(new < need, new * 2, new)
    return torch.where(bound > 0, new, need)


class Histogram:
    """Histogram state: ``counts`` ``[C, bins]`` float64 and ``bound`` ``[C]`` float64."""

    def __init__(self, bins: int, signed: bool) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 8 or bins & (bins - 1):
            raise PTQUserError(f"bins must be a power of two >= 8, got {bins!r}")
        self.bins = bins
        self.signed = signed
        self.counts: torch.Tensor | None = None
        self.bound: torch.Tensor | None = None

    def _layout(self, bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo = -bound if self.signed else torch.zeros_like(bound)
        return lo, (bound - lo) / self.bins

    def _rebin(self, counts: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Counts on ``bound=old`` moved to ``bound=new >= old`` (per channel)."""
        B = self.bins
        lo_o, w_o = self._layout(old)
        lo_n, w_n = self._layout(new)
        w_n = torch.where(w_n > 0, w_n, torch.ones_like(w_n))
        i = torch.arange(B, dtype=torch.float64, device=counts.device)
        a = lo_o[:, None] + i * w_o[:, None]
        width = w_o[:, None].expand_as(a)
        j0 = torch.floor((a - lo_n[:, None]) / w_n[:, None]).clamp(0, B - 1)
        edge = lo_n[:, None] + (j0 + 1) * w_n[:, None]
        frac = torch.where(width > 0, ((edge - a) / torch.where(width > 0, width, 1.0)).clamp(0, 1), 1.0)
        frac = torch.where(frac > 1 - _SNAP, 1.0, torch.where(frac < _SNAP, 0.0, frac))
        j1 = (j0 + 1).clamp(max=B - 1)
        out = torch.zeros_like(counts)
        out.scatter_add_(1, j0.long(), counts * frac)
        out.scatter_add_(1, j1.long(), counts * (1 - frac))
        return out

    def add(self, v: torch.Tensor) -> None:
        """Add the values ``v`` (float32, ``[C, n]``; their |x| when unsigned)."""
        C, B = v.shape[0], self.bins
        v = v if self.signed else v.abs()
        amax = (v.abs() if self.signed else v).amax(dim=1).double()
        if self.counts is None or self.bound is None:
            self.bound = amax
            self.counts = torch.zeros(C, B, dtype=torch.float64, device=v.device)
        elif bool((amax > self.bound).any()):
            new = _widen(self.bound, amax)
            self.counts = self._rebin(self.counts, self.bound, new)
            self.bound = new
        lo, w = self._layout(self.bound)
        w = torch.where(w > 0, w, torch.ones_like(w))
        idx = torch.floor((v - lo[:, None].float()) / w[:, None].float()).clamp_(0, B - 1).long()
        idx += torch.arange(C, device=v.device)[:, None] * B
        self.counts += torch.bincount(idx.reshape(-1), minlength=C * B).reshape(C, B).to(torch.float64)

    def merge(self, other: "Histogram") -> None:
        if other.counts is None or other.bound is None:
            return
        if self.counts is None or self.bound is None:
            self.counts, self.bound = other.counts.clone(), other.bound.clone()
            return
        o_counts = other.counts.to(self.counts.device)
        o_bound = other.bound.to(self.bound.device)
        bound = torch.maximum(self.bound, o_bound)
        self.counts = self._rebin(self.counts, self.bound, bound) + self._rebin(o_counts, o_bound, bound)
        self.bound = bound

    def centres(self) -> torch.Tensor:
        """Bin centres ``[C, bins]`` (float64)."""
        assert self.bound is not None
        lo, w = self._layout(self.bound)
        i = torch.arange(self.bins, dtype=torch.float64, device=self.bound.device)
        return lo[:, None] + (i + 0.5) * w[:, None]

    def quantile(self, q: float) -> torch.Tensor:
        """Per-channel ``q``-quantile (``0 < q <= 1``), linear inside the bin, float64 ``[C]``."""
        assert self.counts is not None and self.bound is not None
        lo, w = self._layout(self.bound)
        cum = self.counts.cumsum(dim=1)
        target = q * cum[:, -1:]
        idx = torch.searchsorted(cum, target).clamp(max=self.bins - 1)
        before = torch.where(idx > 0, cum.gather(1, (idx - 1).clamp(min=0)), torch.zeros_like(target))
        c = self.counts.gather(1, idx)
        frac = torch.where(c > 0, ((target - before) / torch.where(c > 0, c, 1.0)).clamp(0, 1), 1.0)
        return (lo[:, None] + w[:, None] * (idx + frac)).squeeze(1)
