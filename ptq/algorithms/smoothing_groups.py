"""Find SmoothQuant's smoothing groups of a decoder block from its data flow, not from layer names.

SmoothQuant (Xiao et al., ICML 2023, §4 and Fig. 6) smooths the inputs of the linear layers
that directly follow a LayerNorm / RMSNorm (q/k/v, gate/up, OPT's fc1, GPT-2's c_attn / c_fc),
whose per-channel scale can absorb ``diag(s)^-1``; the paper's "migrate ... into the previous
layer" also applies between two linear layers when everything in between is positively
homogeneous per channel (v -> o, up -> down, fc1 -> ReLU -> fc2).

:func:`smoothing_groups` finds both kinds by running the block:

1. **norm groups**: one forward pass with hooks on every norm-like leaf module (a 1-D
   ``weight`` of the hidden size: LayerNorm, RMSNorm, ...) and on every linear layer's input; a
   linear whose input *is* a norm's output tensor (same storage, shape and strides) belongs
   to that norm's group;
2. **linear -> linear groups** (``prev_linear=True``): for each remaining linear ``C`` and each
   earlier linear ``P`` with ``P.out_features == C.in_features``, random factors
   ``d in [0.5, 2]`` are folded into ``(P, C)`` (P's output rows divided by d, C's input
   columns multiplied by d); if the block's outputs do not change (relative error < 1e-4),
   the pair is a group. GQA's v -> o (different widths) and SiLU / GELU paths fail this test.

Linear layers in no group are listed in :attr:`SmoothingPlan.unsmoothed` with the reason.

:func:`apply_smoothing` folds factors ``s`` into a group (``diag(s)^-1`` into the source, ``diag(s)``
into the linears' input columns); it lives here, beside the finder that tests it, so that every
smoothing method (SmoothQuant, AWQ) imports both from one place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ptq.layers import in_out_features, is_linear, linear_weight

PROBE_RTOL = 1e-4


@dataclass(frozen=True)
class SmoothGroup:
    """Linear layers (``linears``, names relative to the block) whose shared input ``source`` produces.

    ``kind`` is ``"norm"`` (fold into a norm's weight/bias) or ``"linear"`` (into a linear's output rows).
    """

    source: str
    kind: str
    linears: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "linears": list(self.linears)}


@dataclass
class SmoothingPlan:
    """The groups of a block, and the linear layers left unsmoothed with the reason."""

    groups: list[SmoothGroup] = field(default_factory=list)
    unsmoothed: dict[str, str] = field(default_factory=dict)


def _is_norm(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return (not is_linear(m) and not isinstance(m, nn.Embedding) and next(m.children(), None) is None
            and isinstance(w, torch.Tensor) and w.dim() == 1)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
                      and a.dtype == b.dtype)


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


@torch.no_grad()
def _trace(block: nn.Module, run: Callable[[], Any]) -> tuple[list[str], dict[str, str | None], list[torch.Tensor]]:
    """Linear names in first-call order, the norm (or None) whose output each reads, the outputs."""
    linears = {n: m for n, m in block.named_modules() if n and is_linear(m)}
    norms = {n: m for n, m in block.named_modules() if n and _is_norm(m)}
    outputs: list[tuple[str, torch.Tensor]] = []
    order: list[str] = []
    source: dict[str, str | None] = {}
    handles = []
    for name, m in norms.items():
        handles.append(m.register_forward_hook(
            lambda mod, args, out, name=name: outputs.append((name, out)) if isinstance(out, torch.Tensor) else None))
    for name, m in linears.items():
        def pre(mod: nn.Module, args: tuple, name: str = name) -> None:
            if name in source:
                return
            order.append(name)
            source[name] = next((n for n, t in reversed(outputs) if _same(t, args[0])), None)
        handles.append(m.register_forward_pre_hook(pre))
    try:
        ref = [t.detach().clone() for t in _tensors(run())]
    finally:
        for h in handles:
            h.remove()
    return order, source, ref


def _rel_change(block_run: Callable[[], Any], ref: list[torch.Tensor]) -> float:
    out = _tensors(block_run())
    num = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in zip(out, ref))
    den = sum(float(b.float().pow(2).sum()) for b in ref)
    return (num / max(den, 1e-30)) ** 0.5


@torch.no_grad()
def _homogeneous(block: nn.Module, run: Callable[[], Any], p: nn.Module, c: nn.Module, ref: list[torch.Tensor]) -> bool:
    """Folding random positive factors into (p, c) leaves the block's outputs unchanged."""
    n = in_out_features(c)[0]
    g = torch.Generator().manual_seed(n)
    d = torch.exp(torch.empty(n).uniform_(-0.7, 0.7, generator=g))
    saved = {k: v.detach().clone() for k, v in list(p.state_dict().items()) + [("c", c.weight)]}
    apply_smoothing(p, [c], d)
    try:
        return _rel_change(run, ref) < PROBE_RTOL
    finally:
        p.load_state_dict({k: v for k, v in saved.items() if k != "c"})
        c.weight.data.copy_(saved["c"])


def smoothing_groups(block: nn.Module, run: Callable[[], Any], prev_linear: bool = False) -> SmoothingPlan:
    """The smoothing groups of ``block`` (see the module docstring).

    Args:
        block: a decoder block (any architecture); it is run, never left changed.
        run: calls the block once on sample inputs and returns its outputs (a tensor or a
            tuple/list of them); a small mini-batch is enough.
        prev_linear: also look for linear -> linear groups (v -> o, up -> down, fc1 -> fc2).
    """
    modules = dict(block.named_modules())
    order, source, ref = _trace(block, run)
    plan = SmoothingPlan()
    by_norm: dict[str, list[str]] = {}
    for name in order:
        if source[name] is not None:
            by_norm.setdefault(source[name], []).append(name)  # type: ignore[arg-type]
    plan.groups += [SmoothGroup(norm, "norm", tuple(names)) for norm, names in by_norm.items()]
    rest = [n for n in order if source[n] is None]
    taken: set[str] = set()
    for c_name in rest:
        if not prev_linear:
            plan.unsmoothed[c_name] = "its input is not a norm's output (linear -> linear smoothing not requested)"
            continue
        c_in = in_out_features(modules[c_name])[0]
        found = None
        for p_name in order[: order.index(c_name)]:
            if p_name in taken or in_out_features(modules[p_name])[1] != c_in:
                continue
            if _homogeneous(block, run, modules[p_name], modules[c_name], ref):
                found = p_name
                break
        if found is None:
            plan.unsmoothed[c_name] = ("its input is not a norm's output and no earlier linear layer of the same "
                                       "width reaches it through a per-channel positively homogeneous path")
        else:
            taken.add(found)
            plan.groups.append(SmoothGroup(found, "linear", (c_name,)))
    never = [n for n in modules if n and is_linear(modules[n]) and n not in source]
    for n in never:
        plan.unsmoothed[n] = "not called in the block's forward pass"
    return plan


@torch.no_grad()
def apply_smoothing(source: nn.Module, linears: Iterable[nn.Module], s: torch.Tensor) -> None:
    """Fold ``diag(s)^-1`` into ``source`` and ``diag(s)`` into the input columns of ``linears``, in place.

    ``source`` is the module producing the group's input: a norm (its ``weight`` and ``bias``,
    if any, are divided by ``s``) or a linear / ``Conv1D`` layer (its output rows and bias are
    divided by ``s``). The float function is unchanged up to rounding.
    """
    s = s.float()
    if (s <= 0).any() or not bool(torch.isfinite(s).all()):
        raise ValueError("smoothing factors must be positive and finite")
    if is_linear(source):
        W = linear_weight(source)
        if W.shape[0] != s.numel():
            raise ValueError(f"the source layer has {W.shape[0]} outputs but s has {s.numel()} factors")
        W.copy_((W.float() / s[:, None].to(W.device)).to(W.dtype))
    else:
        weight = getattr(source, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or weight.numel() != s.numel():
            raise ValueError(f"cannot fold smoothing factors into {type(source).__name__}: it needs a 1-D weight "
                             f"of {s.numel()} channels")
        weight.data.copy_((weight.data.float() / s.to(weight.device)).to(weight.dtype))
    bias = getattr(source, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.data.copy_((bias.data.float() / s.to(bias.device)).to(bias.dtype))
    for m in linears:
        W = linear_weight(m)
        if W.shape[1] != s.numel():
            raise ValueError(f"a layer of the group has {W.shape[1]} inputs but s has {s.numel()} factors")
        W.copy_((W.float() * s[None, :].to(W.device)).to(W.dtype))
