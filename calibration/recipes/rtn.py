"""Recipe step ``rtn``: weight-only round-to-nearest with a chosen range observer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from calibration.models.blocks import linear_weight, set_linear_weight
from calibration.observers import OBSERVERS
from calibration.recipes.step import WeightStep, option, register_step
from calibration.recipes.weight_ranges import weight_qparams
from calibration.runner.context import BlockContext, LayerRecord
from ptq.algorithms.rtn import rtn
from ptq.errors import PTQUserError


@register_step("rtn", weight_only=True)
@dataclass
class RTNStep(WeightStep):
    """Round every linear weight of each block to its grid.

    Args:
        bits, granularity, group_size, symmetric, include_zero: the :class:`ptq.QuantSpec`.
        scale_dtype: ``float16`` (default) rounds scales to float16 values, so packed
            checkpoints store them losslessly in 2 bytes; ``float32`` keeps them exact.
        observer: how the range of each ``(scale, zero)`` unit is chosen: ``minmax``,
            ``percentile`` or ``mse`` (any registered observer), fed the weight itself.
        observer_args: keyword arguments of the observer (e.g. ``{"percentile": 99.9}``).
    """

    observer: str = option("minmax", "range of each weight unit: minmax, percentile, mse (default %(default)s)")
    observer_args: dict[str, Any] = field(default_factory=dict)

    needs_calibration_data = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.observer not in OBSERVERS:
            raise PTQUserError(f"unknown observer {self.observer!r}; known: {', '.join(sorted(OBSERVERS))}")

    def process_block(self, ctx: BlockContext) -> None:
        for name, layer in ctx.linear_layers().items():
            W = linear_weight(layer).float()
            scale, zero = weight_qparams(W, self.spec, self.observer, self.observer_args)
            q = rtn(W, self.spec, scale, zero)
            set_linear_weight(layer, q.weight)
            rel = (q.loss / max(float(W.pow(2).sum()), 1e-30)) ** 0.5
            ctx.record(name, LayerRecord(
                method="rtn", spec=self.spec, scale=q.scale, zero=q.zero,
                error=rel, info={"error_kind": "relative weight error ||W-Q||/||W||"},
            ))
