"""Recipe step ``activation-stats``: where are the outliers? (changes nothing)

For the input ``X`` of every linear layer it records max |x|, the number and fraction of
input channels whose max |x_j| reaches ``threshold`` (LLM.int8()'s outlier feature
dimensions, threshold 6.0), and the kurtosis ``E[(x - mu)^4] / Var(x)^2`` of all values
(3 for a Gaussian; large for heavy-tailed activations). Moments accumulate in float64.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from calibration import distributed
from calibration.recipes.step import Step, register_step
from calibration.runner.context import BlockContext


class ActivationStats:
    """Per-channel max |x| and global raw moments of the values seen."""

    def __init__(self) -> None:
        self.absmax: torch.Tensor | None = None
        self.moments = torch.zeros(5, dtype=torch.float64)  # count, sum x, x^2, x^3, x^4

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1])
        a = x.abs().amax(dim=0).float()
        self.absmax = a if self.absmax is None else torch.maximum(self.absmax, a)
        v = x.double().reshape(-1)
        v2 = v * v
        self.moments += torch.stack([
            torch.tensor(float(v.numel()), dtype=torch.float64), v.sum(), v2.sum(), (v2 * v).sum(), (v2 * v2).sum()
        ])

    def all_reduce(self) -> None:
        """Maxima and moments of every rank's values (data-parallel runs)."""
        assert self.absmax is not None
        distributed.all_reduce_(self.absmax, "max", "reducing activation maxima")
        distributed.all_reduce_(self.moments, "sum", "summing activation moments")

    def summary(self, threshold: float) -> dict[str, Any]:
        n, s1, s2, s3, s4 = self.moments.tolist()
        mu = s1 / n
        var = s2 / n - mu * mu
        m4 = s4 / n - 4 * mu * s3 / n + 6 * mu * mu * s2 / n - 3 * mu**4
        assert self.absmax is not None
        over = int((self.absmax >= threshold).sum())
        return {
            "max_abs": float(self.absmax.max()),
            "channels": int(self.absmax.numel()),
            "outlier_channels": over,
            "outlier_fraction": over / self.absmax.numel(),
            "kurtosis": m4 / (var * var) if var > 0 else float("nan"),
        }


@register_step("activation-stats")
@dataclass
class ActivationStatsStep(Step):
    """Record activation statistics of every linear layer's input; ``summary`` holds them."""

    threshold: float = 6.0
    summary: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    resume_attrs: ClassVar[tuple[str, ...]] = ("summary",)  # what finalize reports, kept across a resume

    def process_block(self, ctx: BlockContext) -> None:
        stats = ctx.observe_inputs(list(ctx.linear_layers()), lambda name, layer: ActivationStats())
        for name, st in stats.items():
            self.summary[ctx.qualified(name)] = st.summary(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.name, "threshold": self.threshold}

    def finalize(self, model) -> dict[str, Any]:
        return {"layers": self.summary}
