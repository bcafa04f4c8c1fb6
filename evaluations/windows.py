"""Evaluation windows: which tokens of a corpus are fed and which are scored (one definition).

Perplexity, KL to the float model and the cached float logits all walk the same windows:

- the papers' protocol: non-overlapping windows of ``seqlen`` tokens from the start of the
  stream, the partial last window dropped, at most ``max_windows`` of them; every token of a
  window but its first is predicted and scored;
- ``stride < seqlen``: the sliding-window variant (windows start every ``stride`` tokens,
  only the tokens not scored by an earlier window count);
- ``window_seed``: instead of the first ``max_windows`` windows, a random sample of them
  (without replacement, drawn with ``torch.Generator().manual_seed(window_seed)``, in stream
  order) from all the non-overlapping windows: another seed gives another set of windows of
  the same text, which is how the run-to-run noise of a table is measured;
- ``bos``: when the model expects a BOS token (``calibration.data.bos.bos_token_id``), each
  window is fed as ``[BOS] + its seqlen tokens`` (``seqlen + 1`` positions). The scored tokens
  stay the same predicted tokens as without BOS (the window's first token, predicted from BOS
  alone, is *not* scored), so runs with and without BOS score the same set and pair window by
  window.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn
from ptq.errors import PTQUserError


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


def sampled_windows(n_tokens: int, seqlen: int, max_windows: int | None, window_seed: int) -> list[tuple[int, int]]:
    """``max_windows`` of the non-overlapping windows drawn at random with ``window_seed``, in stream order."""
    every = windows(n_tokens, seqlen)
    n = len(every) if max_windows is None else min(max_windows, len(every))
    order = torch.randperm(len(every), generator=torch.Generator().manual_seed(window_seed))[:n]
    return [every[i] for i in sorted(order.tolist())]


@dataclass(frozen=True)
class WindowPlan:
    """The windows of one evaluation: ``spans`` as :func:`windows` gives them, and how they are fed."""

    spans: tuple[tuple[int, int], ...]
    seqlen: int
    stride: int
    bos: int | None = None  # token id fed in front of every window, None: the papers' raw windows
    window_seed: int | None = None
    counts: tuple[int, ...] = field(init=False)  # scored tokens per window

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", tuple(b + self.seqlen - f for b, f in self.spans))

    @property
    def tokens(self) -> int:
        return sum(self.counts)

    def describe(self) -> dict[str, Any]:
        """What identifies the scored tokens (records, cache keys); ``begins`` pairs two runs window by window."""
        return {"seqlen": self.seqlen, "stride": self.stride, "windows": len(self.spans), "bos": self.bos is not None,
                "window_seed": self.window_seed, "begins": [b for b, _ in self.spans]}


def plan_windows(n_tokens: int, seqlen: int = 512, stride: int | None = None, max_windows: int | None = None,
                 window_seed: int | None = None, bos: int | None = None) -> WindowPlan:
    """The :class:`WindowPlan` of a stream of ``n_tokens`` (module docstring)."""
    if window_seed is not None:
        if stride is not None and stride != seqlen:
            raise PTQUserError("window_seed samples non-overlapping windows; it cannot be combined with a stride")
        spans = sampled_windows(n_tokens, seqlen, max_windows, window_seed)
    else:
        spans = windows(n_tokens, seqlen, stride, max_windows)
    return WindowPlan(tuple(spans), seqlen, seqlen if stride is None else stride, bos, window_seed)


def window_batch(ids: torch.Tensor, spans: list[tuple[int, int]] | tuple[tuple[int, int], ...], plan: WindowPlan) -> torch.Tensor:
    """Input ids ``[len(spans), seqlen (+1 with BOS)]`` of some windows of the 1-D stream ``ids``."""
    rows = torch.stack([ids[b:b + plan.seqlen] for b, _ in spans])
    if plan.bos is not None:
        rows = torch.cat([torch.full((rows.shape[0], 1), plan.bos, dtype=rows.dtype), rows], dim=1)
    return rows


def scored_rows(begin: int, first: int, plan: WindowPlan) -> slice:
    """The logits rows of a window that predict its scored tokens ``ids[first:begin + seqlen]``.

    Logits row ``j`` predicts input position ``j + 1``; token ``ids[t]`` sits at input position
    ``t - begin`` (``+ 1`` behind a BOS).
    """
    shift = 1 if plan.bos is not None else 0
    return slice(first - begin - 1 + shift, plan.seqlen - 1 + shift)


@torch.inference_mode()
def window_logits(model: nn.Module, ids: torch.Tensor, plan: WindowPlan, batch_size: int = 1,
                  progress: bool = False, desc: str = "windows") -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(window index, logits [scored, V], targets [scored])`` for every window of ``plan``, in order.

    One forward pass per ``batch_size`` windows on ``model``'s device; the logits are views of
    that pass's output (consume them before the next item).
    """
    ids = ids.reshape(-1)
    device = next(model.parameters()).device
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan.spans), desc=desc, unit="window", leave=False)
    for i in range(0, len(plan.spans), batch_size):
        chunk = plan.spans[i:i + batch_size]
        batch = window_batch(ids, chunk, plan).to(device)
        logits = model(input_ids=batch, use_cache=False).logits
        for row, (begin, first) in enumerate(chunk):
            yield i + row, logits[row, scored_rows(begin, first, plan)], ids[first:begin + plan.seqlen].to(device)
        del logits
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
