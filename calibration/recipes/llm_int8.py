"""Recipe step ``llm-int8``: LLM.int8() layers (:class:`ptq.modules.llm_int8_linear.Int8OutlierLinear`).

``mode="dynamic"`` needs no calibration data: outlier columns are found per forward pass.
``mode="static"`` feeds every linear layer's inputs to the ``absmax-per-channel`` observer
and fixes the columns with ``max |x_j| >= threshold`` as the float columns. Each layer's record
gives the number and fraction of float columns (static) and the relative weight error of
the int8 part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from calibration.models.blocks import linear_weight
from calibration.observers import make_observer
from calibration.recipes.step import Step, option, register_step
from calibration.runner.context import BlockContext, LayerRecord
from ptq.algorithms.llm_int8 import check_threshold
from ptq.modules.llm_int8_linear import COMPUTES, GRANULARITIES, MODES, Int8OutlierLinear
from ptq.modules.swap import set_submodule
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError


@register_step("llm-int8")
@dataclass
class LLMInt8Step(Step):
    """Swap every linear layer of each block for an LLM.int8() layer.

    Args:
        threshold: outlier threshold on |x| (6.0; ``inf`` = the vector-wise baseline).
        mode: ``dynamic`` (per batch) or ``static`` (columns fixed from calibration).
        granularity: ``vector`` (per token / per output row) or ``tensor`` (naive baseline).
        compute: ``int`` (int8 x int8 -> int32) or ``fake`` (float matmul of dequantized codes).
        zero_point: zeropoint instead of absmax quantization of activation and weight rows
            (the paper's "zeropoint vector-wise + decomposition", Table 1).
    """

    threshold: float = option(6.0, "outlier threshold on |x| (default %(default)s; inf = absmax vector-wise int8, "
                                   "no decomposition)")
    mode: str = option("dynamic", "dynamic: outlier columns per batch; static: fixed from calibration (default "
                                  "%(default)s)", choices=MODES)
    granularity: str = option("vector", "vector: per token / per output row scales; tensor: naive per-tensor absmax "
                                        "(default %(default)s)", choices=GRANULARITIES, flag="--int8-granularity",
                              dest="int8_granularity")
    compute: str = "int"
    zero_point: bool = option(False, "zeropoint (asymmetric) instead of absmax int8 rows, activations and weights: "
                                     "the paper's most accurate variant (Table 1); needs --int8-granularity vector",
                              omit_default=True)

    def __post_init__(self) -> None:
        self.threshold = float(self.threshold)
        check_threshold(self.threshold)
        for name, allowed in (("mode", MODES), ("granularity", GRANULARITIES), ("compute", COMPUTES)):
            if getattr(self, name) not in allowed:
                raise PTQUserError(f"llm-int8 {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.zero_point, bool):
            raise PTQUserError(f"llm-int8 zero_point must be true or false, got {self.zero_point!r}")
        if self.zero_point and self.granularity != "vector":
            raise PTQUserError("zero_point quantizes rows: use it with granularity vector (the default)")

    @property
    def needs_calibration_data(self) -> bool:  # type: ignore[override]
        return self.mode == "static"

    def process_block(self, ctx: BlockContext) -> None:
        layers = ctx.linear_layers()
        absmax: dict[str, torch.Tensor] = {}
        if self.mode == "static":
            stats = ctx.observe_inputs(list(layers), lambda n, l: make_observer("absmax-per-channel", axis=-1))
            absmax = {n: o.absmax for n, o in stats.items()}
        spec = QuantSpec(bits=8, symmetric=not self.zero_point,
                         granularity="channel" if self.granularity == "vector" else "tensor")
        for name, layer in layers.items():
            W = linear_weight(layer).float()
            idx = None
            if self.mode == "static":
                idx = (absmax[name] >= self.threshold).nonzero().squeeze(1)
            q = Int8OutlierLinear.from_float(layer, self.threshold, self.mode, self.granularity, self.compute, idx,
                                             zero_point=self.zero_point)
            err = float((q.dequantized_weight() - W).norm() / W.norm().clamp(min=1e-30))
            set_submodule(ctx.block, name, q)
            info = {"threshold": self.threshold if math.isfinite(self.threshold) else "inf", "mode": self.mode,
                    "granularity": self.granularity, "zero_point": self.zero_point, "error_kind": "relative weight error ||W-Q||/||W||"}
            if idx is not None:
                info.update(float_columns=int(idx.numel()), float_fraction=idx.numel() / W.shape[1])
            ctx.record(name, LayerRecord(method="llm-int8", spec=spec, error=err, info=info))
