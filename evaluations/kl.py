"""KL divergence of a quantized model's next-token distributions to the float model's.

Per scored position ``t`` (the tokens perplexity scores, :mod:`evaluations.windows`), with
``P`` the float (reference) distribution and ``Q`` the quantized one over the vocabulary:

    KL_t(P || Q) = sum_i p_i (log p_i - log q_i)                 (exact, :func:`kl_exact`)

The float logits are cached as their **top-k** (log-probs ``log p_i`` and ids ``i`` of the k
most likely tokens, set ``S``) plus the log of the remaining mass ``log P_R``,
``P_R = 1 - sum_S p_i``. From them :func:`kl_topk` computes the KL between ``P`` and ``Q``
coarse-grained to ``S`` plus one "rest" bucket:

    KL_k = sum_{i in S} p_i (log p_i - log q_i) + P_R (log P_R - log Q_R),   Q_R = sum_{i not in S} q_i

(``log Q_R`` is a logsumexp over the quantized log-probs outside ``S``, exact even when
``Q_R`` is tiny). By the log-sum inequality ``KL_k <= KL`` and the gap is exactly
``P_R * KL(P_R-tail || Q_R-tail)`` (the KL of the two distributions restricted to the tail and
renormalised), so the approximation is a lower bound whose error vanishes with the tail mass
``P_R``; the tests bound it against :func:`kl_exact`. llama.cpp's ``--kl-divergence-base``
stores every log-prob in 16 bits instead; both report, as here, the mean KL (with its SE),
median, p99 and max over tokens, how often the top token is the same ("same top p"), and the
ratio of perplexities.

Top-1 agreement compares ``argmax q`` with the float model's most likely token (ties go to the
lower id on both sides). SEs are over windows (:mod:`evaluations.stats`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch.nn import functional as F

from evaluations.stats import mean_se
from ptq.errors import PTQUserError

ROWS = 128  # positions per chunk: a [ROWS, V] float32 log-softmax stays small


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` in float32 over the last dimension."""
    return F.log_softmax(logits.float(), dim=-1)


def topk_reference(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log p [T, k], ids [T, k] int32, log P_R [T])`` of reference logits ``[T, V]``, most likely first.

    ``k`` larger than the vocabulary keeps the whole vocabulary (``P_R = 0``: the KL is then exact)."""
    if k < 1:
        raise PTQUserError(f"top-k must be at least 1, got {k}")
    k = min(k, logits.shape[-1])
    vals, idx, rest = [], [], []
    for i in range(0, logits.shape[0], ROWS):
        logp = log_probs(logits[i:i + ROWS])
        v, ix = logp.topk(k, dim=-1)  # sorted: ties keep the lower id first, as argmax does
        vals.append(v)
        idx.append(ix.to(torch.int32))
        rest.append(torch.logsumexp(logp.scatter(-1, ix, float("-inf")), dim=-1))
    return torch.cat(vals), torch.cat(idx), torch.cat(rest)


def _plogp_diff(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``p (log p - log q)`` elementwise, 0 where ``p == 0``."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))


def kl_exact(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-position ``KL(P || Q)`` over the full vocabulary, float32, ``[T]``."""
    out = []
    for i in range(0, logits.shape[0], ROWS):
        out.append(_plogp_diff(log_probs(ref_logits[i:i + ROWS]), log_probs(logits[i:i + ROWS])).sum(-1))
    return torch.cat(out)


def kl_topk(ref_logp: torch.Tensor, ref_ids: torch.Tensor, ref_log_rest: torch.Tensor,
            logits: torch.Tensor) -> torch.Tensor:
    """Per-position ``KL_k`` (module docstring) of cached top-k reference log-probs to ``logits [T, V]``."""
    out = []
    for i in range(0, logits.shape[0], ROWS):
        logq = log_probs(logits[i:i + ROWS])
        ids = ref_ids[i:i + ROWS].long()
        head = _plogp_diff(ref_logp[i:i + ROWS], logq.gather(-1, ids)).sum(-1)
        log_q_rest = torch.logsumexp(logq.scatter(-1, ids, float("-inf")), dim=-1)
        out.append(head + _plogp_diff(ref_log_rest[i:i + ROWS], log_q_rest))
    return torch.cat(out)


def top1_agreement(ref_top: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per position: does ``logits``' most likely token equal ``ref_top [T]``? (bool ``[T]``)."""
    return logits.argmax(dim=-1) == ref_top.to(logits.device).long()


@dataclass
class KLResult:
    """llama.cpp's ``--kl-divergence`` set against the float model (KL in nats, SEs over windows)."""

    kl_mean: float
    kl_se: float | None
    kl_median: float
    kl_p99: float
    kl_max: float
    top1: float  # fraction of positions whose most likely token is the float model's
    top1_se: float | None
    ppl_ratio: float  # ppl(quantized) / ppl(float) on the same windows
    ppl_ratio_se: float | None  # delta method on the paired per-window NLL differences
    ref_ppl: float
    delta_ppl: float  # ppl(quantized) - ppl(float)
    delta_ppl_se: float | None  # paired SE (evaluations.stats.paired_ppl_delta)
    topk: int | None  # None: exact full-vocabulary KL
    ref_rest_mass: float  # mean probability outside the float model's top-k (0 for exact)
    tokens: int
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(kl: Sequence[torch.Tensor], top1: Sequence[torch.Tensor], nll: Sequence[float],
              ref_nll: Sequence[float], topk: int | None, ref_rest_mass: float) -> KLResult:
    """Reduce per-window per-position KL / agreement and per-window mean NLLs to a :class:`KLResult`."""
    from evaluations.stats import paired_ppl_delta, ppl_se

    counts = [int(t.numel()) for t in kl]
    every = torch.cat([t.double() for t in kl])
    kl_mean, kl_se = mean_se([float(t.double().mean()) for t in kl], counts)
    top, top_se = mean_se([float(t.double().mean()) for t in top1], counts)
    d, d_se = mean_se([a - b for a, b in zip(nll, ref_nll)], counts)  # mean ln(ppl / ref ppl)
    ratio = math.exp(d)
    ref_ppl, _ = ppl_se(ref_nll, counts)
    delta, delta_se = paired_ppl_delta(nll, ref_nll, counts)
    return KLResult(
        kl_mean=kl_mean, kl_se=kl_se, kl_median=float(every.median()), kl_p99=float(torch.quantile(every, 0.99)),
        kl_max=float(every.max()), top1=top, top1_se=top_se, ppl_ratio=ratio,
        ppl_ratio_se=None if d_se is None else ratio * d_se, ref_ppl=ref_ppl, delta_ppl=delta,
        delta_ppl_se=delta_se, topk=topk, ref_rest_mass=ref_rest_mass, tokens=sum(counts), windows=len(counts),
    )
