"""Recipe step ``awq``: AWQ's activation-aware scaling and clipping of each block (Lin et al., MLSys 2024, §3.2).

For each decoder block, as the reference code (mit-han-lab/llm-awq ``auto_scale_block`` /
``auto_clip_block``, AutoAWQ ``quantizer.py``) does:

1. the scaling groups are the SmoothQuant groups of the block's data flow
   (:func:`ptq.algorithms.smoothing_groups.smoothing_groups` with linear -> linear pairs):
   norm -> q/k/v, norm -> gate/up, up -> down, v -> o where the shapes allow it (not under GQA,
   where the reference skips o_proj too); a layer in no group keeps ``s = 1`` (listed in the
   summary's ``unscaled`` with the reason: a plain ``nn.Linear`` has nowhere to keep an input
   scale that nothing upstream absorbs);
2. ``s_X`` (mean |x| per input channel, ``meanabs-per-channel`` observer) over all calibration
   segments; the module whose output error is the loss is the group's smallest enclosing module
   (the attention module for q/k/v, the MLP for gate/up) or, for one layer, the layer itself;
3. every group's alpha is searched on the block as it came in (:func:`ptq.algorithms.awq.search_scale`,
   20 alphas, weights fake-quantized with the following step's grid), on the first
   ``search_samples`` segments; then every group's scale is folded (norm or previous linear
   divided by ``s``, the group's input columns multiplied by it);
4. the clipping search (:func:`ptq.algorithms.awq.awq_clip`) on every linear layer's scaled
   weight except the query / key projections (``clip_skip``: "due to qk bmm, it is hard to clip
   precisely", the reference), with their scaled inputs; the weights are clamped.

The block stays float; the next step (``rtn``, ``gptq``) quantizes it. The weight format the
searches simulate is that step's (``bits`` etc. left unset here; a recipe links the two), or this
step's own fields when all of ``bits``, ``granularity``, ``group_size``, ``symmetric`` are given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from calibration import distributed
from calibration.observers import make_observer
from calibration.recipes.smoothquant import group_label
from calibration.recipes.step import Step, check_spec_fits, register_step
from calibration.runner.block_inputs import _autocast, block_output
from calibration.runner.context import BlockContext, LayerRecord
from ptq.algorithms.awq import CLIP_TOKENS, N_GRID, apply_clip, awq_clip, sample_tokens, scaled_fake_quant, search_scale
from ptq.algorithms.smoothing_groups import SmoothGroup, SmoothingPlan, apply_smoothing, smoothing_groups
from ptq.errors import PTQUserError
from ptq.layers import linear_weight, set_linear_weight
from ptq.spec import QuantSpec

CLIP_SKIP = ("q_", "k_", "query", "key", "Wqkv")  # the reference's q/k name patterns
SPEC_FIELDS = ("bits", "granularity", "group_size", "symmetric")


class _Calls:
    """The (args, kwargs, output) of every call of one module, cloned (hooked during a block run)."""

    def __init__(self, module: nn.Module) -> None:
        self.calls: list[tuple[tuple, dict, torch.Tensor]] = []
        self._pending: tuple[tuple, dict] | None = None
        self._handles = [module.register_forward_pre_hook(self._pre, with_kwargs=True),
                         module.register_forward_hook(self._post)]

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        clone = lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
        self._pending = (tuple(clone(a) for a in args), {k: clone(v) for k, v in kwargs.items()})

    def _post(self, module: nn.Module, args: tuple, out: Any) -> None:
        assert self._pending is not None
        self.calls.append((*self._pending, block_output(out).detach().clone()))
        self._pending = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


class _Inputs:
    """A statistic that keeps a layer's inputs as rows ``[tokens, K]``."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        self.rows.append(x.detach().reshape(-1, x.shape[-1]).float().clone())

    def tensor(self) -> torch.Tensor:
        return torch.cat(self.rows)

    def all_reduce(self) -> None:
        """Every rank's rows, in rank order (one process's order: the ranks hold contiguous shares)."""
        self.rows = [r for rows in distributed.all_gather_objects(self.rows, "gathering AWQ clip inputs") for r in rows]


def inspected_module(group: SmoothGroup) -> str:
    """The module whose output error scores ``group``'s scales: the layer itself for one layer, else the
    deepest module enclosing all of them (``self_attn`` for q/k/v, ``mlp`` for gate/up; ``""``: the block)."""
    if len(group.linears) == 1:
        return group.linears[0]
    parts = [n.split(".") for n in group.linears]
    common = os.path.commonprefix(parts)
    return ".".join(common)


@register_step("awq")
@dataclass
class AWQStep(Step):
    """Search and fold AWQ scales, then clip, in every block (the next step quantizes).

    Args:
        bits, granularity, group_size, symmetric: the weight format the searches simulate; leave
            all unset to take the following step's (set by the recipe), or give bits, granularity,
            symmetric (and group_size with groups).
        n_grid: alphas tried, ``0, 1/n_grid, ..., (n_grid-1)/n_grid`` (the paper's 20).
        search_samples: calibration segments the scale and clip searches run on (0: all);
            ``s_X`` always comes from all of them.
        clip: run the clipping search (the reference's ``auto_clip``).
        clip_skip: layers (by name part) the clipping search leaves alone.
    """

    bits: int | None = field(default=None, metadata={"omit_default": True})
    granularity: str | None = field(default=None, metadata={"omit_default": True})
    group_size: int | None = field(default=None, metadata={"omit_default": True})
    symmetric: bool | None = field(default=None, metadata={"omit_default": True})
    n_grid: int = field(default=N_GRID, metadata={"omit_default": True})
    search_samples: int = field(default=8, metadata={"omit_default": True})
    clip: bool = field(default=True, metadata={"omit_default": True})
    clip_skip: tuple[str, ...] = field(default=CLIP_SKIP, metadata={"omit_default": True})
    resume_attrs: ClassVar[tuple[str, ...]] = ("_summary",)  # what finalize reports, kept across a resume

    def __post_init__(self) -> None:
        given = [f for f in SPEC_FIELDS if getattr(self, f) is not None]
        missing = [f for f in ("bits", "granularity", "symmetric") if getattr(self, f) is None]
        self.spec: QuantSpec | None = None
        if given and missing:
            raise PTQUserError(f"awq: give bits, granularity, symmetric (and group_size for groups) or none of them "
                             f"(none: the following step's format); {', '.join(missing)} missing")
        if given:
            self.spec = QuantSpec(bits=self.bits, granularity=self.granularity,  # type: ignore[arg-type]
                                  group_size=self.group_size, symmetric=self.symmetric, scale_dtype="float16")
            self._check_spec(self.spec)
        if isinstance(self.n_grid, bool) or not isinstance(self.n_grid, int) or self.n_grid < 1:
            raise PTQUserError(f"awq: n_grid must be a positive integer, got {self.n_grid!r}")
        if isinstance(self.search_samples, bool) or not isinstance(self.search_samples, int) or self.search_samples < 0:
            raise PTQUserError(f"awq: search_samples must be a non-negative integer (0: all), got {self.search_samples!r}")
        self.clip_skip = tuple(self.clip_skip)
        self._plans: dict[tuple[str, ...], SmoothingPlan] = {}
        self._summary: dict[str, Any] = {}

    @staticmethod
    def _check_spec(spec: QuantSpec) -> None:
        if spec.granularity == "tensor":
            raise PTQUserError("awq: the scale and clipping searches need a per-channel or per-group weight format, "
                             "not per-tensor")

    def link_next(self, following: Step | None) -> None:
        """Take the weight format of the following step (``rtn``, ``gptq``) unless this step has its own."""
        if self.spec is None and following is not None and isinstance(getattr(following, "spec", None), QuantSpec):
            self._check_spec(following.spec)  # type: ignore[attr-defined]
            self.spec = following.spec  # type: ignore[attr-defined]

    def initialize(self, model: nn.Module) -> None:
        if self.spec is None:
            raise PTQUserError("awq needs a weight quantizer after it in the recipe (rtn or gptq), whose format its "
                             "searches simulate, or its own bits, granularity, group_size, symmetric")
        check_spec_fits(model, self.spec)
        self._summary = {"spec": self.spec.to_dict(), "alphas": {}, "unscaled": {}, "unclipped": []}

    def _plan(self, ctx: BlockContext) -> SmoothingPlan:
        key = tuple(ctx.linear_layers())
        if key not in self._plans:
            self._plans[key] = smoothing_groups(ctx.block, ctx.first_samples(1, local=True).run, prev_linear=True)
        return self._plans[key]

    @torch.no_grad()
    def _search(self, ctx: BlockContext, plan: SmoothingPlan) -> list[Any]:
        """Every group's :class:`ScaleSearch`, on the block as it is (nothing folded yet)."""
        assert self.spec is not None
        spec = self.spec
        modules = dict(ctx.block.named_modules())
        stats = ctx.observe_inputs([g.linears[0] for g in plan.groups],
                                   lambda n, m: make_observer("meanabs-per-channel", axis=-1))
        search = ctx.first_samples(self.search_samples)
        targets = {inspected_module(g) for g in plan.groups}
        hooks = {t: _Calls(modules[t]) for t in targets}
        try:
            search.run()
        finally:
            for h in hooks.values():
                h.remove()
        results = []
        for g in plan.groups:
            layers = [modules[n] for n in g.linears]
            saved = [linear_weight(m).detach().clone() for m in layers]
            target, calls = modules[inspected_module(g)], hooks[inspected_module(g)].calls

            def loss(s: torch.Tensor) -> float:
                try:
                    for m, W in zip(layers, saved):
                        set_linear_weight(m, scaled_fake_quant(W, s, spec))
                    with _autocast(ctx.block, ctx.autocast):
                        num = sum(float((block_output(target(*a, **k)).float() - ref.float()).pow(2).sum())
                                  for a, k, ref in calls)
                finally:
                    for m, W in zip(layers, saved):
                        set_linear_weight(m, W)
                num, count = distributed.sum_floats(num, sum(ref.numel() for _, _, ref in calls),
                                                    what="summing the AWQ search loss")
                return num / max(count, 1)  # every rank picks the same alpha

            results.append(search_scale(stats[g.linears[0]].meanabs, loss, self.n_grid))  # type: ignore[attr-defined]
        return results

    @torch.no_grad()
    def _clip(self, ctx: BlockContext) -> list[str]:
        """Clip every layer but ``clip_skip``'s on its scaled inputs; returns the names clipped."""
        assert self.spec is not None
        layers = ctx.linear_layers()
        names = [n for n in layers if not any(p in n for p in self.clip_skip)]
        if not names:
            return []
        inputs = ctx.first_samples(self.search_samples).observe_inputs(names, lambda n, m: _Inputs())
        for n in names:
            W = linear_weight(layers[n]).float()
            X = sample_tokens(inputs[n].tensor(), CLIP_TOKENS)  # type: ignore[attr-defined]
            set_linear_weight(layers[n], apply_clip(W, awq_clip(W, X, self.spec, n_grid=self.n_grid)))
        return names

    def process_block(self, ctx: BlockContext) -> None:
        plan = self._plan(ctx)
        for name, reason in plan.unsmoothed.items():
            self._summary["unscaled"].setdefault(name, reason)
        modules = dict(ctx.block.named_modules())
        results = self._search(ctx, plan) if plan.groups else []
        for g, res in zip(plan.groups, results):
            apply_smoothing(modules[g.source], [modules[n] for n in g.linears], res.scale)
        clipped = self._clip(ctx) if self.clip else []
        self._summary["alphas"][ctx.index] = {group_label(g): res.alpha for g, res in zip(plan.groups, results)}
        if ctx.index == 0:
            self._summary["unclipped"] = [n for n in ctx.linear_layers() if n not in clipped]
        info: dict[str, dict[str, Any]] = {n: {"alpha": None, "clip": n in clipped} for n in ctx.linear_layers()}
        for g, res in zip(plan.groups, results):
            for n in g.linears:
                info[n].update(alpha=res.alpha, source=g.source, source_kind=g.kind)
        for n, note in info.items():
            old = ctx.records.get(ctx.qualified(n))
            if old is not None:
                old.info["awq"] = note
            else:
                ctx.records[ctx.qualified(n)] = LayerRecord(method="awq", info={"awq": note})

    def finalize(self, model: nn.Module) -> dict[str, Any]:
        return dict(self._summary)
