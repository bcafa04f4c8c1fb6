"""Recipe step ``w8a8``: int8 weights (per output channel) and int8 activations, as :class:`W8A8Linear`.

Weights: ``s_w = max|W[n, :]| / 127``; activations per-token dynamic (``s_x = max|X[m, :]| / 127``
at run time) or per-tensor static (``s_x = max(|xmin|, |xmax|) / 127`` from a calibration
observer's range over the block's calibration inputs: ``minmax``, ``percentile``, ``mse``, ...),
as the W8A8 settings of SmoothQuant (Xiao et al., ICML 2023, §5 Table 2, O1-O3). Every linear
layer of each block is swapped for a :class:`ptq.modules.w8a8_linear.W8A8Linear` through the
swap registry (kind ``"w8a8"``); its record keeps the info earlier steps wrote (e.g. the
SmoothQuant alpha). After an 8-bit symmetric per-channel weight step (``gptq`` / ``rtn`` with
``bits=8, symmetric=True``) the weight keeps that step's grid and codes (``weight_grid`` in the
record): SmoothQuant, then GPTQ W8, then int8 activations, as llm-compressor's W8A8 recipe.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from calibration.models.blocks import linear_weight
from calibration.observers import OBSERVERS, AbsMaxObserver, MSEObserver, make_observer
from calibration.recipes.step import Step, register_step
from calibration.runner.context import BlockContext, LayerRecord
from ptq.modules.swap import set_submodule
from ptq.algorithms.absmax import QMAX
from ptq.modules.w8a8_linear import ACT_MODES, EXEC_MODES, W8A8Linear
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError

WEIGHT_SPEC = QuantSpec(bits=8, symmetric=True, granularity="channel")
ACT_SPEC = QuantSpec(bits=8, symmetric=True, granularity="tensor")


def static_act_scale(observer: Any) -> float:
    """``max(|xmin|, |xmax|) / 127`` of a per-tensor observer's range (1.0 for an all-zero input)."""
    lo, hi = observer.range(ACT_SPEC) if isinstance(observer, MSEObserver) else observer.range()
    amax = max(abs(float(lo)), abs(float(hi)))
    return amax / QMAX if amax > 0 else 1.0


def earlier_int8_grid(record: LayerRecord | None) -> torch.Tensor | None:
    """The per-channel step of the 8-bit symmetric per-channel grid an earlier weight step left
    (GPTQ or RTN with ``bits=8, symmetric=True, granularity="channel"``), else ``None``.

    W8A8 then takes that step's codes as they are: the weight is rounded once, by the algorithm
    that chose it (GPTQ's error compensation survives), not a second time onto the absmax grid.
    """
    spec = getattr(record, "spec", None)
    if record is None or record.scale is None or spec is None:
        return None
    if not (spec.bits == 8 and spec.symmetric and spec.granularity == "channel"):
        return None
    if record.zero is not None and not bool((record.zero == 2 ** (spec.bits - 1)).all()):
        return None
    return record.scale.reshape(-1)


@register_step("w8a8")
@dataclass
class W8A8Step(Step):
    """Swap every linear layer for a W8A8 module.

    Args:
        act: ``"per-token"`` (dynamic) or ``"static"`` (per-tensor, calibrated).
        act_observer: observer of the static activation range (``minmax``, ``percentile``, ``mse``).
        observer_args: its keyword arguments (e.g. ``{"percentile": 99.99}``).
        mode: ``"int"`` (int8 x int8 -> int32 kernel) or ``"fake"`` (float matmul of dequantized values).
    """

    act: str = "per-token"
    act_observer: str = "minmax"
    observer_args: dict[str, Any] = field(default_factory=dict)
    mode: str = "int"

    def __post_init__(self) -> None:
        if self.act not in ACT_MODES:
            raise PTQUserError(f"act must be one of {', '.join(ACT_MODES)}, got {self.act!r}")
        if self.mode not in EXEC_MODES:
            raise PTQUserError(f"mode must be one of {', '.join(EXEC_MODES)}, got {self.mode!r}")
        if self.act_observer not in OBSERVERS or issubclass(OBSERVERS[self.act_observer], AbsMaxObserver):
            raise PTQUserError(f"act_observer must be a per-tensor range observer (minmax, percentile, mse, ...), "
                             f"got {self.act_observer!r}")
        make_observer(self.act_observer, axis=None, **self.observer_args)  # fails early on bad arguments

    @property
    def needs_calibration_data(self) -> bool:  # type: ignore[override]
        return self.act == "static"

    def process_block(self, ctx: BlockContext) -> None:
        layers = ctx.linear_layers()
        scales: dict[str, float] = {}
        if self.act == "static":
            stats = ctx.observe_inputs(
                list(layers), lambda n, l: make_observer(self.act_observer, axis=None, **self.observer_args))
            scales = {n: static_act_scale(o) for n, o in stats.items()}
        for name, layer in layers.items():
            W = linear_weight(layer).float()
            qname = ctx.qualified(name)
            old = ctx.records.get(qname)
            grid = earlier_int8_grid(old)
            try:
                q = W8A8Linear.from_float(layer, act=self.act, act_scale=scales.get(name), mode=self.mode,
                                          weight_scale=grid)
            except ValueError as e:
                if grid is None:
                    raise
                warnings.warn(f"w8a8: layer {qname}: {e}; re-quantizing its weight on the absmax grid",
                              RuntimeWarning, stacklevel=2)
                grid = None
                q = W8A8Linear.from_float(layer, act=self.act, act_scale=scales.get(name), mode=self.mode)
            err = float((q.dequantize_weight() - W).norm() / W.norm().clamp(min=1e-30))
            set_submodule(ctx.block, name, q)
            info = dict(act=self.act, act_bits=8, error_kind="relative weight error ||W-Q||/||W||",
                        weight_grid=old.method if old is not None and grid is not None else "absmax")
            if self.act == "static":
                info.update(act_observer=self.act_observer, act_scale=scales[name])
            ctx.record(name, LayerRecord(method="w8a8", spec=WEIGHT_SPEC, error=err, info=info))
