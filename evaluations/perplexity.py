"""Perplexity of a causal LM on a corpus, following the GPTQ / SmoothQuant papers' protocol.

Concatenate the split's text, tokenize it once (no special tokens), cut it into
non-overlapping windows of ``seqlen`` tokens and drop the partial last window; each window
is one forward pass, every token after the first of a window is predicted, and

    ppl = exp( sum_w sum_t NLL(x_{w,t} | x_{w,<t}) / #predicted tokens ).

(The GPTQ reference code multiplies each window's mean loss by ``seqlen`` and divides by
``windows * seqlen``, the same number.) With ``stride < seqlen`` the sliding-window variant
of the ``transformers`` perplexity guide is used instead: windows start every ``stride``
tokens and only the tokens not scored by an earlier window count, each seeing up to
``seqlen - 1`` tokens of context.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from ptq.errors import PTQUserError


@dataclass
class PerplexityResult:
    """Perplexity and what it was computed over; ``nll`` is the mean NLL in nats."""

    ppl: float
    nll: float
    tokens: int  # predicted (scored) tokens
    windows: int
    seqlen: int
    stride: int
    seconds: float
    tokens_per_s: float  # tokens passed through the model per second

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def windows(n_tokens: int, seqlen: int, stride: int | None = None, max_windows: int | None = None) -> list[tuple[int, int]]:
    """``(begin, first_scored)`` per window: window ``[begin, begin + seqlen)`` scores the
    tokens from ``first_scored`` on (``first_scored == begin + 1`` for the first window of
    the protocol, i.e. everything but its first token)."""
    if seqlen < 2:
        raise PTQUserError(f"seqlen must be at least 2, got {seqlen}")
    stride = seqlen if stride is None else stride
    if not 1 <= stride <= seqlen:
        raise PTQUserError(f"stride must be between 1 and seqlen ({seqlen}), got {stride}")
    if max_windows is not None and max_windows < 1:
        raise PTQUserError(f"max_windows must be at least 1, got {max_windows}")
    if n_tokens < seqlen:
        raise PTQUserError(f"the text has {n_tokens} tokens, fewer than one window of {seqlen}; "
                         f"use a smaller seqlen or a larger corpus")
    out, scored_until = [], 0
    for begin in range(0, n_tokens - seqlen + 1, stride):
        out.append((begin, max(begin + 1, scored_until)))
        scored_until = begin + seqlen
        if max_windows is not None and len(out) == max_windows:
            break
    return out


NLL_ROWS = 128  # rows of logits per cross-entropy call: keeps log-softmax in cache (4x faster than whole)


def window_nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed NLL (nats) of ``targets [T]`` under ``logits [T, V]``, in float32, in row chunks."""
    total = 0.0
    for i in range(0, logits.shape[0], NLL_ROWS):
        total += float(F.cross_entropy(logits[i:i + NLL_ROWS].float(), targets[i:i + NLL_ROWS], reduction="sum"))
    return total


@torch.inference_mode()
def perplexity_from_ids(
    model: nn.Module,
    input_ids: torch.Tensor,
    seqlen: int = 512,
    max_windows: int | None = None,
    stride: int | None = None,
    batch_size: int = 1,
    progress: bool = False,
) -> PerplexityResult:
    """Perplexity of ``model`` on a ``[1, N]`` (or ``[N]``) token tensor (module docstring)."""
    ids = input_ids.reshape(-1)
    spans = windows(ids.numel(), seqlen, stride, max_windows)
    device = next(model.parameters()).device
    nll_sum, scored = 0.0, 0
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(spans), desc="perplexity", unit="window", leave=False)
    for i in range(0, len(spans), batch_size):
        chunk = spans[i:i + batch_size]
        batch = torch.stack([ids[b:b + seqlen] for b, _ in chunk]).to(device)
        logits = model(input_ids=batch, use_cache=False).logits
        for row, (begin, first) in enumerate(chunk):
            k = first - begin  # first scored position inside the window (>= 1)
            nll_sum += window_nll(logits[row, k - 1:seqlen - 1], batch[row, k:])
            scored += seqlen - k
        del logits
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    nll = nll_sum / scored
    return PerplexityResult(
        ppl=math.exp(nll), nll=nll, tokens=scored, windows=len(spans), seqlen=seqlen,
        stride=seqlen if stride is None else stride, seconds=seconds,
        tokens_per_s=len(spans) * seqlen / seconds if seconds > 0 else float("inf"),
    )


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
) -> PerplexityResult:
    """Perplexity of ``model`` on the ``split`` of a corpus (a named source or a local path)."""
    from calibration.data import tokenize_corpus

    ids = tokenize_corpus(tokenizer, source, split)
    return perplexity_from_ids(model, ids, seqlen, max_windows, stride, batch_size, progress)
