"""Recipe step ``rtn``: weight-only round-to-nearest with a chosen qparams chooser or range observer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from calibration.models.blocks import linear_weight, set_linear_weight
from calibration.observers import OBSERVERS
from calibration.recipes.step import WeightStep, option, register_step
from calibration.recipes.weight_ranges import weight_qparams
from calibration.runner.context import BlockContext, LayerRecord
from ptq.algorithms.rtn import rtn, rtn_qparams
from ptq.choosers import get_qparams
from ptq.errors import PTQUserError
from ptq.spec import QuantSpec


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
        qparams: a registered qparams chooser (:mod:`ptq.choosers`: ``minmax``, ``mse``, ``hqq``,
            ``q4_0``) instead of an observer, with its own rounding if it has one; ``qparams_args`` its
            options. Choosers that need calibration statistics (``mse-weighted``) belong to GPTQ. ``hqq`` gets float16 zero points.
        weight_format: ``int`` (the affine grid), or the 4-bit code books ``nf4`` / ``fp4`` (QLoRA;
            ``bits`` 4, blocks of ``group_size``, 64 by default, one absmax each).
        double_quant: with ``nf4`` / ``fp4``, 8-bit double quantization of the absmax constants.
    """

    observer: str = option("minmax", "range of each weight unit: minmax, percentile, mse (default %(default)s)")
    observer_args: dict[str, Any] = field(default_factory=dict)
    qparams: str = field(default="minmax", metadata={"omit_default": True})
    qparams_args: dict[str, Any] | None = field(default=None, metadata={"omit_default": True})
    weight_format: str = field(default="int", metadata={"omit_default": True})
    double_quant: bool = field(default=False, metadata={"omit_default": True})

    needs_calibration_data = False

    def __post_init__(self) -> None:
        chooser = get_qparams(self.qparams)
        chooser.check_options(self.qparams_args or {})
        if chooser.uses_importance:
            raise PTQUserError(f"qparams {self.qparams!r} weighs columns by calibration statistics (diag H), which "
                             "RTN does not collect; use it with the gptq step (--method gptq)")
        if self.qparams != "minmax" and (self.observer != "minmax" or self.observer_args):
            raise PTQUserError(f"choose the range either by qparams ({self.qparams!r}) or by an observer "
                             f"({self.observer!r}), not both")
        if self.weight_format != "int" and (self.qparams != "minmax" or self.observer != "minmax"):
            raise PTQUserError(f"weight_format {self.weight_format!r} scales each block by its absmax; it takes no "
                             "qparams or observer choice (leave them at minmax)")
        self.spec = QuantSpec(  # WeightStep's spec, with the number format and the chooser's zero dtype
            bits=self.bits, symmetric=self.symmetric, granularity=self.granularity,
            group_size=self.group_size, include_zero=self.include_zero, scale_dtype=self.scale_dtype,
            format=self.weight_format, double_quant=self.double_quant,
            **({"zero_dtype": "float16"} if chooser.float_zero else {}),
        )
        if self.observer not in OBSERVERS:
            raise PTQUserError(f"unknown observer {self.observer!r}; known: {', '.join(sorted(OBSERVERS))}")

    def process_block(self, ctx: BlockContext) -> None:
        for name, layer in ctx.linear_layers().items():
            W = linear_weight(layer).float()
            if self.spec.codebook:
                q = rtn(W, self.spec)
            elif self.qparams != "minmax":
                q = rtn_qparams(W, self.spec, self.qparams, **(self.qparams_args or {}))
            else:
                q = rtn(W, self.spec, *weight_qparams(W, self.spec, self.observer, self.observer_args))
            set_linear_weight(layer, q.weight)
            rel = (q.loss / max(float(W.pow(2).sum()), 1e-30)) ** 0.5
            ctx.record(name, LayerRecord(
                method="rtn", spec=self.spec, scale=q.scale, zero=q.zero,
                error=rel, info={"error_kind": "relative weight error ||W-Q||/||W||"},
            ))
