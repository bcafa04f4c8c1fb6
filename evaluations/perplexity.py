"""Perplexity of a causal LM on a corpus, following the GPTQ / SmoothQuant papers' protocol.

Concatenate the split's text, tokenize it once (no special tokens), cut it into
non-overlapping windows of ``seqlen`` tokens and drop the partial last window; each window
is one forward pass, every token after the first of a window is predicted, and

    ppl = exp( sum_w sum_t NLL(x_{w,t} | x_{w,<t}) / #predicted tokens ).

(The GPTQ reference code multiplies each window's mean loss by ``seqlen`` and divides by
``windows * seqlen``, the same number.) With ``stride < seqlen`` the sliding-window variant
of the ``transformers`` perplexity guide is used instead: windows start every ``stride``
tokens and only the tokens not scored by an earlier window count, each seeing up to
``seqlen - 1`` tokens of context. The windows (also a seeded sample of them, and BOS in
front of each) are defined once in :mod:`evaluations.windows`; the standard errors over
windows in :mod:`evaluations.stats`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from calibration import distributed
from evaluations.stats import ppl_se
from ptq.errors import PTQUserError
from evaluations.windows import WindowPlan, plan_windows, window_logits, windows

__all__ = ["PerplexityResult", "perplexity", "perplexity_from_ids", "score_windows", "resolve_bos", "windows",
           "window_nll"]


@dataclass
class PerplexityResult:
    """Perplexity and what it was computed over; ``nll`` is the mean NLL in nats.

    ``ppl_se`` / ``nll_se``: standard errors over windows (:mod:`evaluations.stats`; None for
    one window). ``window_nll`` / ``window_tokens`` / ``window_begins``: each window's mean NLL,
    scored tokens and first token, so two runs on the same windows can be compared pairwise.
    """

    ppl: float
    nll: float
    tokens: int  # predicted (scored) tokens
    windows: int
    seqlen: int
    stride: int
    seconds: float
    tokens_per_s: float  # tokens passed through the model per second
    ppl_se: float | None = None
    nll_se: float | None = None
    bos: bool = False  # a BOS token was fed in front of every window
    window_seed: int | None = None
    window_nll: list[float] = field(default_factory=list)
    window_tokens: list[int] = field(default_factory=list)
    window_begins: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NLL_ROWS = 128  # rows of logits per cross-entropy call: keeps log-softmax in cache (4x faster than whole)


def window_nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed NLL (nats) of ``targets [T]`` under ``logits [T, V]``, in float32, in row chunks."""
    total = 0.0
    for i in range(0, logits.shape[0], NLL_ROWS):
        total += float(F.cross_entropy(logits[i:i + NLL_ROWS].float(), targets[i:i + NLL_ROWS], reduction="sum"))
    return total


WindowHook = Callable[[int, torch.Tensor, torch.Tensor], None]


def score_windows(model: nn.Module, ids: torch.Tensor, plan: WindowPlan, batch_size: int = 1, progress: bool = False,
                  on_window: WindowHook | None = None, logits: Iterator | None = None) -> PerplexityResult:
    """Perplexity of ``model`` over the windows of ``plan``; ``on_window(index, logits, targets)``
    sees every window's scored logits too (KL to a reference is computed from the same pass).
    ``logits``: the ``(window, logits, targets)`` items to score instead of ``model``'s
    (:func:`evaluations.streamed.streamed_window_logits` of a model larger than memory; one process).

    Under ``torchrun`` each rank scores a contiguous share of the windows (``on_window`` sees only
    those) and the per-window NLL sums are added over the ranks, so every rank returns the result
    of one process over all the windows."""
    sums = [0.0] * len(plan.spans)
    start = time.perf_counter()
    first, last = distributed.share(len(plan.spans))  # under torchrun: this rank's windows (all of them in one process)
    mine = WindowPlan(plan.spans[first:last], plan.seqlen, plan.stride, plan.bos, plan.window_seed)
    items = logits if logits is not None else window_logits(model, ids, mine, batch_size,
                                                            progress and distributed.is_main(), desc="perplexity")
    for w, logits, targets in items:
        sums[first + w] = window_nll(logits, targets)
        if on_window is not None:
            on_window(first + w, logits, targets)
    if distributed.active():  # each window was scored by one rank, the others hold 0.0: the sum is exact
        sums = distributed.all_reduce_(torch.tensor(sums, dtype=torch.float64), "sum", "summing window NLLs").tolist()
    seconds = time.perf_counter() - start
    counts = list(plan.counts)
    per_window = [s / c for s, c in zip(sums, counts)]
    nll = sum(sums) / plan.tokens
    _, se = ppl_se(per_window, counts)
    fed = len(plan.spans) * (plan.seqlen + (plan.bos is not None))
    return PerplexityResult(
        ppl=math.exp(nll), nll=nll, tokens=plan.tokens, windows=len(plan.spans), seqlen=plan.seqlen,
        stride=plan.stride, seconds=seconds, tokens_per_s=fed / seconds if seconds > 0 else float("inf"),
        ppl_se=se, nll_se=None if se is None else se / math.exp(nll), bos=plan.bos is not None,
        window_seed=plan.window_seed, window_nll=per_window, window_tokens=counts,
        window_begins=[b for b, _ in plan.spans],
    )


def perplexity_from_ids(
    model: nn.Module,
    input_ids: torch.Tensor,
    seqlen: int = 512,
    max_windows: int | None = None,
    stride: int | None = None,
    batch_size: int = 1,
    progress: bool = False,
    window_seed: int | None = None,
    bos: int | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` on a ``[1, N]`` (or ``[N]``) token tensor (module docstring);
    ``bos``: a token id fed in front of every window (None: the papers' raw windows)."""
    ids = input_ids.reshape(-1)
    plan = plan_windows(ids.numel(), seqlen, stride, max_windows, window_seed, bos)
    return score_windows(model, ids, plan, batch_size, progress)


def resolve_bos(tokenizer: Any, bos: bool | None = None) -> int | None:
    """The token id to feed in front of every window: ``None`` (auto) follows what the tokenizer
    adds (:func:`calibration.data.bos.bos_token_id`), ``False`` is the papers' protocol, ``True``
    forces the tokenizer's BOS token."""
    from calibration.data.bos import choose_bos

    return choose_bos(tokenizer, bos, "the tokenizer has no BOS token; evaluate without BOS (bos=False / --no-bos)")


def perplexity(
    model: nn.Module,
    tokenizer: Any,
    source: str,
    split: str = "test",
    seqlen: int = 512,
    max_windows: int | None = None,
    stride: int | None = None,
    batch_size: int = 1,
    progress: bool = False,
    window_seed: int | None = None,
    bos: bool | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` on the ``split`` of a corpus (a named source or a local path);
    ``bos`` as :func:`resolve_bos` (default: a BOS in front of every window iff the tokenizer adds one)."""
    from calibration.data import tokenize_corpus

    ids = tokenize_corpus(tokenizer, source, split)
    return perplexity_from_ids(model, ids, seqlen, max_windows, stride, batch_size, progress, window_seed,
                               resolve_bos(tokenizer, bos))
