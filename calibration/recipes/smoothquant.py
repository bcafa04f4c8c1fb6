"""Recipe step ``smoothquant``: SmoothQuant smoothing of each block (Xiao et al., ICML 2023, §4).

For each decoder block: the smoothing groups are found from its data flow
(:func:`ptq.algorithms.smoothquant.smoothing_groups`: norm -> q/k/v, norm -> gate/up, OPT's
fc1, GPT-2's c_attn / c_fc, optionally v -> o and up -> down); ``max|X_j|`` of each group's
input is collected with the ``absmax-per-channel`` observer; then
``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` (Eq. 4) is folded into the norm (or previous
linear) and the group's weights. With ``act_stat="rms"`` the activation side of Eq. 4 is the
channel's RMS over the calibration tokens (``rms-per-channel`` observer) instead of its max:
per-token dynamic scales follow each token's own largest value, so what a channel costs is its
typical size, and a rare massive-activation token no longer decides the migration alone (see
:mod:`calibration.observers.rms`). The block stays a float block computing the same function;
a later step quantizes it (``w8a8``, ``rtn``, ``gptq``).

``alpha="auto"`` searches alpha per block on the grid 0.0, 0.1, ..., 1.0, as Intel Neural
Compressor's SmoothQuant auto-tuning: each candidate block is smoothed, its linears are
fake-quantized W8A8 (weights int8 per channel; activations per-token, or per-tensor static
with the min-max range of the smoothed calibration inputs, ``max_j max|X_j| / s_j``), and the
MSE of its outputs against the float block's outputs on the calibration data is measured;
the smallest error wins (ties: the smaller alpha). With ``search_metric="token-relative"``
each token's squared error is divided by its float output's squared norm first
(:func:`token_relative_mse`): the next block's norm rescales every token to unit RMS, so
that is the error it sees, and a few massive-activation tokens (attention sinks, |h| in
the thousands) no longer decide alone. With ``search_scope="group"`` each smoothing group
then gets its own alpha (Neural Compressor's layer-wise auto-alpha): starting from the
block's best alpha, the groups in data-flow order (q/k/v, gate/up, down, ...) each search the
grid with the others fixed, keeping the block-output error the measure (11 more candidates per
group). The massive activations at the MLP down-projection want a strong migration that the
attention inputs do not. The search runs on the first
``search_samples`` calibration segments (16 by default: 11 candidates x 16 segments cost
less than two passes over 128), the statistics (``max|X_j|``) on all of them. Chosen alphas
go into each smoothed layer's record and the step's summary (``ptq.json``).

Where the statistics come from: ``statistics="sequential"`` (default) observes each block on the
outputs of the blocks before it as already quantized (the runner re-runs each quantized block: two
passes per block). ``statistics="float-model"`` observes each block on the float model's
activations, as the paper's reference code does (its ``act_scales`` come from one pass of the FP16
model before anything is smoothed): the statistics pass runs the whole float block and its outputs
become the next block's inputs (:attr:`BlockContext.next_hidden`), so each block costs one forward
pass; later steps of the recipe (``w8a8``, ``gptq``) then also see float-model inputs.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from calibration import distributed
from calibration.models.blocks import linear_weight, set_linear_weight
from calibration.observers import make_observer
from calibration.recipes.step import Step, option, register_step
from calibration.runner.context import BlockContext, LayerRecord
from ptq.algorithms.smoothquant import (SmoothingPlan, apply_smoothing, check_alpha, group_weight_absmax,
                                        smooth_scales, smoothing_groups)
from ptq.algorithms.absmax import absmax_scale, quantize_symmetric
from ptq.modules.w8a8_linear import ACT_MODES, quantize_per_token
from ptq.errors import PTQUserError

STATISTICS = ("sequential", "float-model")
ALPHA_GRID = tuple(round(0.1 * i, 1) for i in range(11))
ACT_STATS = {"max": "absmax-per-channel", "rms": "rms-per-channel"}  # statistic -> observer


@contextlib.contextmanager
def fake_w8a8(layers: dict[str, nn.Module], act: str, act_absmax: dict[str, float] | None = None) -> Iterator[None]:
    """Within the block: weights fake-quantized int8 per channel, inputs int8 per-token or static.

    Same numerics as :class:`W8A8Linear` with ``mode="fake"``; weights restored on exit.
    """
    saved = {n: linear_weight(m).detach().clone() for n, m in layers.items()}
    handles = []
    try:
        for name, m in layers.items():
            W = saved[name].float()
            s_w = absmax_scale(W.abs().amax(dim=1))[:, None]
            set_linear_weight(m, quantize_symmetric(W, s_w).float() * s_w)
            if act == "per-token":
                def hook(mod: nn.Module, args: tuple) -> tuple:
                    q, s = quantize_per_token(args[0])
                    return (q.float().mul_(s).to(args[0].dtype),) + tuple(args[1:])
            else:
                assert act_absmax is not None
                s_x = absmax_scale(torch.tensor(act_absmax[name]))

                def hook(mod: nn.Module, args: tuple, s_x: torch.Tensor = s_x) -> tuple:
                    return (quantize_symmetric(args[0], s_x).float().mul_(s_x).to(args[0].dtype),) + tuple(args[1:])
            handles.append(m.register_forward_pre_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
        for name, m in layers.items():
            set_linear_weight(m, saved[name])


def _mse_sums(out: list[torch.Tensor], ref: list[torch.Tensor]) -> tuple[float, float]:
    """``(sum of squared errors, number of values)``: the MSE of the block outputs as two sums."""
    num = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in zip(out, ref))
    return num, float(sum(b.numel() for b in ref))


def token_relative_sums(out: list[torch.Tensor], ref: list[torch.Tensor]) -> tuple[float, float]:
    """``(sum over tokens of ||h_t - h^_t||^2 / ||h_t||^2, number of tokens)`` (``ref`` the float outputs ``h``)."""
    total, count = 0.0, 0
    for a, b in zip(out, ref):
        b = b.float()
        err = (a.float() - b).pow(2).sum(-1)
        total += float((err / b.pow(2).sum(-1).clamp_min(torch.finfo(torch.float32).tiny)).sum())
        count += err.numel()
    return total, float(count)


def _mse(out: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    num, count = _mse_sums(out, ref)
    return num / max(count, 1)


def token_relative_mse(out: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """Mean over tokens of ``||h_t - h^_t||^2 / ||h_t||^2`` (``ref`` the float outputs ``h``, last dim the features)."""
    total, count = token_relative_sums(out, ref)
    return total / max(count, 1)


SEARCH_METRICS = {"mse": _mse, "token-relative": token_relative_mse}
#: the same metrics as (numerator, count) sums, which a data-parallel run adds over the ranks before dividing
SEARCH_SUMS = {"mse": _mse_sums, "token-relative": token_relative_sums}
SEARCH_SCOPES = ("block", "group")


def alpha_value(text: str) -> float | str:
    """``alpha`` written as text: ``"auto"``, a number, or the text as it is (the step then refuses it)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        return text


def group_label(group: Any) -> str:
    """``"input_layernorm -> self_attn.q_proj, self_attn.k_proj, self_attn.v_proj"``: a group's name in summaries."""
    return f"{group.source} -> {', '.join(group.linears)}"


@register_step("smoothquant")
@dataclass
class SmoothQuantStep(Step):
    """Smooth every block's linear groups.

    Args:
        alpha: migration strength in ``[0, 1]`` (paper default 0.5) or ``"auto"`` (per-block grid search).
        prev_linear: also smooth linear -> linear pairs (v -> o, up -> down) where the path allows it.
        act: activation quantization the ``"auto"`` search simulates: ``"per-token"`` or ``"static"``.
        search_samples: calibration segments the ``"auto"`` search measures each alpha on (0: all).
        search_metric: what the ``"auto"`` search minimises: ``"mse"`` of the block outputs (default,
            as Neural Compressor) or ``"token-relative"`` (:func:`token_relative_mse`).
        search_scope: ``"block"`` (one alpha per block, default) or ``"group"`` (then one per
            smoothing group, searched group by group from the block's alpha).
        act_stat: the activation statistic of Eq. 4: ``"max"`` (``max|X_j|``, the paper) or
            ``"rms"`` (the channel's RMS, for per-token activations).
        statistics: ``"sequential"`` (default) or ``"float-model"`` (see the module docstring).
    """

    alpha: float | str = option(0.5, "SmoothQuant migration strength 0..1, or 'auto' (per-block grid search; "
                                     "default %(default)s)", type=alpha_value)
    prev_linear: bool = option(True, "smooth only norm -> linear groups, not the linear -> linear pairs (v -> o, "
                                     "up -> down) where the path allows them (smoothing them is the default)")
    act: str = "per-token"
    search_samples: int = field(default=16, metadata={"omit_default": True})
    search_metric: str = option("mse", "what --alpha auto minimises: the block outputs' MSE (default), or the mean "
                                       "per-token relative squared error (massive-activation tokens do not decide "
                                       "alone)", choices=SEARCH_METRICS, omit_default=True)
    search_scope: str = option("block", "--alpha auto: one alpha per block (default), or one per smoothing group "
                                        "(q/k/v, gate/up, down, ...) searched group by group from the block's best",
                               choices=SEARCH_SCOPES, omit_default=True)
    act_stat: str = option("max", "activation side of SmoothQuant's scales: max|X_j| (default, the paper), or the "
                                  "channel's RMS over the calibration tokens (for per-token activations: rare "
                                  "massive tokens do not decide the migration)", choices=ACT_STATS, omit_default=True)
    statistics: str = option("sequential", "where max|X_j| is observed: 'sequential' (default; each block on the "
                                           "outputs of the blocks before it as quantized, two passes per block) or "
                                           "'float-model' (on the float model's activations, as the paper's "
                                           "reference code: one pass per block)", choices=STATISTICS,
                             omit_default=True)
    resume_attrs: ClassVar[tuple[str, ...]] = ("_summary",)  # what finalize reports, kept across a resume

    def __post_init__(self) -> None:
        if self.statistics not in STATISTICS:
            raise PTQUserError(f"statistics must be one of {', '.join(STATISTICS)}, got {self.statistics!r}")
        if self.alpha != "auto":
            check_alpha(self.alpha)  # type: ignore[arg-type]
        if self.act not in ACT_MODES:
            raise PTQUserError(f"act must be one of {', '.join(ACT_MODES)}, got {self.act!r}")
        if isinstance(self.search_samples, bool) or not isinstance(self.search_samples, int) or self.search_samples < 0:
            raise PTQUserError(f"search_samples must be a non-negative integer (0: all), got {self.search_samples!r}")
        if self.search_metric not in SEARCH_METRICS:
            raise PTQUserError(f"search_metric must be one of {', '.join(SEARCH_METRICS)}, got {self.search_metric!r}")
        if self.search_scope not in SEARCH_SCOPES:
            raise PTQUserError(f"search_scope must be one of {', '.join(SEARCH_SCOPES)}, got {self.search_scope!r}")
        if self.act_stat not in ACT_STATS:
            raise PTQUserError(f"act_stat must be one of {', '.join(ACT_STATS)}, got {self.act_stat!r}")
        for name, default in (("search_metric", "mse"), ("search_scope", "block")):
            if getattr(self, name) != default and self.alpha != "auto":
                raise PTQUserError(f"{name} {getattr(self, name)} needs alpha auto (a fixed alpha searches nothing)")
        self._plans: dict[tuple[str, ...], SmoothingPlan] = {}
        self._summary: dict[str, Any] = {}

    def initialize(self, model: nn.Module) -> None:
        self._summary = {"alphas": {}, "unsmoothed": {}, "search_mse": {}}

    def _plan(self, ctx: BlockContext) -> SmoothingPlan:
        key = tuple(ctx.linear_layers())
        if key not in self._plans:
            # float passes: the finder's homogeneity test compares outputs to 1e-4, below bfloat16's rounding
            probe = ctx.on_batches(1, autocast=None)
            self._plans[key] = smoothing_groups(ctx.block, probe.run, prev_linear=self.prev_linear)
        return self._plans[key]

    def _smooth(self, ctx: BlockContext, plan: SmoothingPlan, magnitude: dict[str, torch.Tensor],
                alpha: float | list[float]) -> dict[str, torch.Tensor]:
        """Smooth every group of ``plan`` with ``alpha`` (one for all, or one per group), the
        activation side of Eq. 4 being ``magnitude`` (``max|X_j|`` or the RMS, see ``act_stat``)."""
        modules = dict(ctx.block.named_modules())
        alphas = alpha if isinstance(alpha, list) else [alpha] * len(plan.groups)
        scales = {}
        for g, a in zip(plan.groups, alphas):
            linears = [modules[n] for n in g.linears]
            s = smooth_scales(magnitude[g.linears[0]], group_weight_absmax(linears), a)
            apply_smoothing(modules[g.source], linears, s)
            scales.update({n: s for n in g.linears})
        return scales

    @torch.no_grad()
    def _search(self, ctx: BlockContext, plan: SmoothingPlan, magnitude: dict[str, torch.Tensor],
                absmax: dict[str, torch.Tensor]) -> tuple[list[float], dict[str, dict[float, float]]]:
        """Per-group alphas and the error of every candidate: under ``"block"`` the grid for the
        whole block; under ``"group"`` that, then the grid for each group in turn, the others fixed."""
        ctx = self._search_context(ctx)
        ref = ctx.float_outputs()
        saved = {k: v.detach().clone() for k, v in ctx.block.state_dict().items()}
        layers = ctx.linear_layers()

        def error(alphas: list[float]) -> float:
            try:
                scales = self._smooth(ctx, plan, magnitude, alphas)
                static = None if self.act != "static" else {
                    n: float((absmax[n] / scales[n]).max() if n in scales else absmax[n].max()) for n in layers}
                with fake_w8a8(layers, self.act, static):
                    num, count = SEARCH_SUMS[self.search_metric](ctx.run(), ref)
            finally:
                ctx.block.load_state_dict(saved)
            num, count = distributed.sum_floats(num, count, what="summing the SmoothQuant search loss")
            return num / max(count, 1)  # every rank picks the same alpha

        n = len(plan.groups)
        block = {a: error([a] * n) for a in ALPHA_GRID}
        best = min(ALPHA_GRID, key=lambda a: (block[a], a))
        alphas, errors, current = [best] * n, {"block": block}, block[best]
        if self.search_scope == "group":
            for i, g in enumerate(plan.groups):
                errs = {a: current if a == alphas[i] else error(alphas[:i] + [a] + alphas[i + 1:]) for a in ALPHA_GRID}
                alphas[i] = min(ALPHA_GRID, key=lambda a: (errs[a], a))
                current = errs[alphas[i]]
                errors[group_label(g)] = errs
        return alphas, errors

    def _search_context(self, ctx: BlockContext) -> BlockContext:
        """``ctx`` restricted to the mini-batches holding the first ``search_samples`` segments."""
        return ctx.first_samples(self.search_samples)

    def process_block(self, ctx: BlockContext) -> None:
        plan = self._plan(ctx)
        for name, reason in plan.unsmoothed.items():
            self._summary["unsmoothed"].setdefault(name, reason)
        if not plan.groups:
            warnings.warn(f"SmoothQuant: block {ctx.prefix} has no linear layer fed by a norm (or a foldable "
                          f"linear); left unsmoothed: {'; '.join(f'{n}: {r}' for n, r in plan.unsmoothed.items())}",
                          RuntimeWarning, stacklevel=2)
            if self.statistics == "float-model":
                ctx.next_hidden = ctx.run()  # the float block's outputs still feed the next block
            return
        layers = ctx.linear_layers()
        # a group's layers share one input: its first layer's statistic stands for all (static search: every layer)
        names = list(layers) if self.alpha == "auto" and self.act == "static" else [g.linears[0] for g in plan.groups]
        stats = ctx.observe_inputs(names, lambda n, l: make_observer(ACT_STATS[self.act_stat], axis=-1),
                                   keep_outputs=self.statistics == "float-model")
        for g in plan.groups:  # layers of a group share one input: one statistic
            stats.update({n: stats[g.linears[0]] for n in g.linears})
        absmax = {n: o.absmax for n, o in stats.items()}
        magnitude = absmax if self.act_stat == "max" else {n: o.rms for n, o in stats.items()}
        if self.alpha == "auto":
            alphas, search = self._search(ctx, plan, magnitude, absmax)
            self._summary["search_mse"][ctx.index] = (
                {str(a): e for a, e in search["block"].items()} if self.search_scope == "block" else
                {label: {str(a): e for a, e in errs.items()} for label, errs in search.items()})
        else:
            alphas = [float(self.alpha)] * len(plan.groups)  # type: ignore[arg-type]
        self._smooth(ctx, plan, magnitude, alphas)
        self._summary["alphas"][ctx.index] = (
            alphas[0] if self.search_scope == "block" else {group_label(g): a for g, a in zip(plan.groups, alphas)})
        for g, alpha in zip(plan.groups, alphas):
            for n in g.linears:
                qname = ctx.qualified(n)
                info = {"smoothquant": {"alpha": alpha, "source": g.source, "source_kind": g.kind}}
                old = ctx.records.get(qname)
                if old is not None:
                    old.info.update(info)
                else:
                    ctx.records[qname] = LayerRecord(method="smoothquant", info=info)

    def finalize(self, model: nn.Module) -> dict[str, Any]:
        out = {"act_stat": self.act_stat, "alphas": dict(self._summary.get("alphas", {})),
               "unsmoothed": dict(self._summary.get("unsmoothed", {}))}
        if self.alpha == "auto":
            out["search_mse"] = self._summary.get("search_mse", {})
        return out
