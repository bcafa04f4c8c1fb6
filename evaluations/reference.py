"""The float model as a reference: its cached top-k logits (or the model itself), and an
evaluation that gives perplexity and KL to it from one pass of the evaluated model.

:func:`compute_reference` runs the float model once over the windows of a plan and keeps,
per scored position, the top-k log-probs, their ids and the log of the remaining mass
(:func:`evaluations.kl.topk_reference`), plus the float model's per-window NLL (for the paired
perplexity ratio). :func:`evaluate` then scores any model on the same windows and computes
``KL_k`` from the cache (:func:`evaluations.kl.kl_topk`); with a float **model** as the
reference instead, the KL is exact over the full vocabulary (:func:`evaluations.kl.kl_exact`),
at the price of a second forward pass per window. :func:`evaluate_reference` evaluates the float
model itself and keeps its top-k logits from the same pass (the float row of a grid: one pass, the
numbers :func:`evaluate` gives against the cached reference).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from calibration import distributed
from evaluations.kl import KLResult, kl_exact, kl_topk, summarize, top1_agreement, topk_reference
from evaluations.perplexity import PerplexityResult, score_windows
from evaluations.windows import WindowPlan, window_logits
from ptq.errors import PTQUserError

DEFAULT_TOPK = 256  # KL_k falls short of KL by the tail mass times the tails' KL: small models leave much mass past 64


@dataclass
class ReferenceLogits:
    """Top-k float log-probs of every scored position of a plan's windows, windows concatenated."""

    logp: torch.Tensor  # [N, k] float32, most likely first
    ids: torch.Tensor  # [N, k] int32
    log_rest: torch.Tensor  # [N] float32: log of the probability outside the top-k
    window_nll: list[float]  # the float model's mean NLL per window
    plan: dict[str, Any]  # WindowPlan.describe() of the windows it was computed on

    @property
    def topk(self) -> int:
        return int(self.logp.shape[1])

    def counts(self) -> list[int]:
        """Scored positions per window."""
        return [int(c) for c in self.plan["counts"]]

    def offsets(self) -> list[int]:
        """Row where each window starts in the concatenated tensors (and the total at the end)."""
        out = [0]
        for c in self.counts():
            out.append(out[-1] + c)
        return out

    def rest_mass(self) -> float:
        return float(self.log_rest.double().exp().mean())

    def check_plan(self, plan: WindowPlan) -> None:
        """Fail if ``plan`` scores other tokens than the cached ones."""
        mine = {k: v for k, v in self.plan.items() if k != "counts"}
        if mine != plan.describe():
            raise PTQUserError("the reference logits were computed on other windows than this evaluation's "
                             f"({_plan_text(self.plan)} vs {_plan_text(plan.describe())})")


def _plan_text(d: dict[str, Any]) -> str:
    return f"{d['windows']} x {d['seqlen']}, stride {d['stride']}, bos {d['bos']}, window_seed {d['window_seed']}"


@torch.inference_mode()
def compute_reference(model: nn.Module, ids: torch.Tensor, plan: WindowPlan, topk: int = DEFAULT_TOPK,
                      batch_size: int = 1, progress: bool = False) -> ReferenceLogits:
    """Run the float ``model`` once over ``plan``'s windows and keep its top-``topk`` log-probs."""
    from calibration import distributed
    from evaluations.perplexity import window_nll

    if distributed.active():  # score_windows shows each rank only its share of the windows
        raise ValueError("evaluate_reference keeps every window's logits: run it in one process, not under torchrun")
    logp, idx, rest, nll = [], [], [], []
    for _, logits, targets in window_logits(model, ids, plan, batch_size, progress, desc="reference logits"):
        v, ix, r = topk_reference(logits, topk)
        logp.append(v.cpu())
        idx.append(ix.cpu())
        rest.append(r.cpu())
        nll.append(window_nll(logits, targets) / targets.numel())
    describe = {**plan.describe(), "counts": list(plan.counts)}
    return ReferenceLogits(torch.cat(logp), torch.cat(idx), torch.cat(rest), nll, describe)


class _Collector:
    """Per-window KL and top-1 agreement of the evaluated model, from the cache or a float model."""

    def __init__(self, reference: ReferenceLogits | nn.Module, ids: torch.Tensor, plan: WindowPlan) -> None:
        self.reference, self.ids, self.plan = reference, ids.reshape(-1), plan
        self.kl: dict[int, torch.Tensor] = {}
        self.top1: dict[int, torch.Tensor] = {}
        self.ref_nll: dict[int, float] = {}
        if isinstance(reference, ReferenceLogits):
            reference.check_plan(plan)
            self.offsets = reference.offsets()

    def __call__(self, w: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        ref = self.reference
        if isinstance(ref, ReferenceLogits):
            a, b = self.offsets[w], self.offsets[w + 1]
            self.kl[w] = kl_topk(ref.logp[a:b], ref.ids[a:b], ref.log_rest[a:b], logits.cpu()).cpu()
            self.top1[w] = top1_agreement(ref.ids[a:b, 0], logits).cpu()
            self.ref_nll[w] = ref.window_nll[w]
            return
        from evaluations.perplexity import window_nll

        one = WindowPlan((self.plan.spans[w],), self.plan.seqlen, self.plan.stride, self.plan.bos,
                         self.plan.window_seed)
        _, ref_logits, _ = next(window_logits(ref, self.ids, one))
        self.kl[w] = kl_exact(ref_logits, logits).cpu()
        self.top1[w] = top1_agreement(ref_logits.argmax(-1), logits).cpu()
        self.ref_nll[w] = window_nll(ref_logits, targets) / targets.numel()

    def gather(self) -> None:
        """Under ``torchrun``: every rank's windows (each rank saw its share of them)."""
        if not distributed.active():
            return
        for kl, top1, ref_nll in distributed.all_gather_objects((self.kl, self.top1, self.ref_nll),
                                                                "gathering per-window KL"):
            self.kl.update(kl)
            self.top1.update(top1)
            self.ref_nll.update(ref_nll)

    def result(self, nll: list[float]) -> KLResult:
        n = len(nll)
        ref = self.reference
        topk = ref.topk if isinstance(ref, ReferenceLogits) else None
        rest = ref.rest_mass() if isinstance(ref, ReferenceLogits) else 0.0
        return summarize([self.kl[w] for w in range(n)], [self.top1[w] for w in range(n)], nll,
                         [self.ref_nll[w] for w in range(n)], topk, rest)


def evaluate(model: nn.Module, ids: torch.Tensor, plan: WindowPlan, reference: ReferenceLogits | nn.Module | None = None,
             batch_size: int = 1, progress: bool = False) -> tuple[PerplexityResult, KLResult | None]:
    """Perplexity of ``model`` on ``plan``'s windows and, given a reference (cached top-k logits,
    or the float model for the exact KL), the KL / top-1 / perplexity-ratio set against it."""
    collector = None if reference is None else _Collector(reference, ids, plan)
    r = score_windows(model, ids.reshape(-1), plan, batch_size, progress, on_window=collector)
    if collector is None:
        return r, None
    collector.gather()
    return r, collector.result(r.window_nll)


def evaluate_reference(model: nn.Module, ids: torch.Tensor, plan: WindowPlan, topk: int = DEFAULT_TOPK,
                       batch_size: int = 1, progress: bool = False
                       ) -> tuple[PerplexityResult, KLResult, ReferenceLogits]:
    """Evaluate the float ``model`` and keep its top-``topk`` logits from that one pass.

    The perplexity, and the KL / top-1 / perplexity ratio against itself, are what
    :func:`evaluate` gives against :func:`compute_reference`'s cache of the same model (same
    logits, same per-window formulas), at one forward pass per window instead of two.
    """
    from calibration import distributed
    from evaluations.perplexity import window_nll

    if distributed.active():  # score_windows shows each rank only its share of the windows
        raise ValueError("evaluate_reference keeps every window's logits: run it in one process, not under torchrun")
    logp, idx, rest, ref_nll, kls, top1 = [], [], [], [], [], []

    def on_window(w: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        v, ix, r = (t.cpu() for t in topk_reference(logits, topk))
        logp.append(v)
        idx.append(ix)
        rest.append(r)
        ref_nll.append(window_nll(logits, targets) / targets.numel())
        kls.append(kl_topk(v, ix, r, logits.cpu()).cpu())
        top1.append(top1_agreement(ix[:, 0], logits).cpu())

    with torch.inference_mode():
        r = score_windows(model, ids.reshape(-1), plan, batch_size, progress, on_window=on_window)
    ref = ReferenceLogits(torch.cat(logp), torch.cat(idx), torch.cat(rest), ref_nll,
                          {**plan.describe(), "counts": list(plan.counts)})
    return r, summarize(kls, top1, r.window_nll, ref_nll, topk, ref.rest_mass()), ref
