"""The grid of one packed weight-only layer, expanded per weight: what every exporter reads.

For a :class:`~ptq.modules.quant_linear.QuantLinear` with unsigned codes ``q in [0, maxq]``::

    w[o, j] = scale[o, g(j)] * (q[o, j] - zero[o, g(j)])

with ``g(j)`` the group of input column ``j`` (``g_idx`` under act-order, ``j // group_size``
otherwise, ``0`` per channel / per tensor). Exporters map ``(q, scale, zero, g)`` onto their
format's own convention and refuse what it cannot hold; this module has no format knowledge.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ptq.modules.quant_linear import QuantLinear
from ptq.spec import QuantSpec


@dataclass(frozen=True)
class LayerGrid:
    """``codes`` int64 ``[out, in]`` in ``[0, maxq]``; ``scale`` float32 and ``zero`` float32 (integer
    values) ``[out, G]``; ``group`` int64 ``[in]`` (the column -> group map); ``spec``."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    group: torch.Tensor
    spec: QuantSpec

    @property
    def consecutive_groups(self) -> bool:
        """True when group ``g`` holds columns ``g * group_size ...`` (no act-order permutation)."""
        n = self.codes.shape[1]
        size = n // self.scale.shape[1]
        return torch.equal(self.group, torch.arange(n) // size)

    def expand(self, p: torch.Tensor) -> torch.Tensor:
        """A per-(row, group) tensor ``[out, G]`` broadcast to every weight ``[out, in]``."""
        return p[:, self.group]

    def dequantize(self) -> torch.Tensor:
        """``scale * (q - zero)`` in float32, the value ptq computes (:meth:`QuantLinear.dequantize_weight`)."""
        return self.expand(self.scale) * (self.codes.float() - self.expand(self.zero))


def layer_grid(qm: QuantLinear) -> LayerGrid:
    """The expanded grid of one packed layer (codes unpacked, per-tensor qparams broadcast to rows)."""
    out, n = qm.out_features, qm.in_features
    rows, groups = qm.qparam_shape
    scale = qm.scales.detach().float().cpu().expand(out, groups).contiguous()
    zero = qm.zeros().detach().float().cpu().expand(out, groups).contiguous()
    if qm.g_idx is not None:
        group = qm.g_idx.detach().long().cpu()
    elif qm.spec.granularity == "group":
        assert qm.spec.group_size is not None
        group = torch.arange(n) // qm.spec.group_size
    else:
        group = torch.zeros(n, dtype=torch.int64)
    return LayerGrid(qm.codes().detach().long().cpu(), scale, zero, group, qm.spec)
