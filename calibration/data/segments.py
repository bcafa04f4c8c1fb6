"""Random calibration windows, as in the GPTQ reference ``datautils.py``."""

from __future__ import annotations

import random
from typing import Any

import torch

from .corpus import Source
from .splits import canonical_split
from .tokens import tokenize_corpus
from ptq.errors import PTQUserError

__all__ = ["calibration_segments", "sample_windows"]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PTQUserError(f"{name} must be a positive integer, got {value!r}")
    return value


def sample_windows(tokens: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """``nsamples`` windows of ``seqlen`` tokens from a ``[1, N]`` (or ``[N]``) stream.

    Each start ``i`` is drawn uniformly from ``[0, N - seqlen - 1]`` by
    ``random.Random(seed).randint`` (the global RNG is untouched), exactly the draws
    GPTQ makes after ``random.seed(seed)``. Needs ``N >= seqlen + 1``.
    """
    _positive("nsamples", nsamples)
    _positive("seqlen", seqlen)
    stream = tokens.reshape(-1)
    total = stream.numel()
    if total < seqlen + 1:
        raise PTQUserError(
            f"the token stream has {total} tokens; nsamples={nsamples} seqlen={seqlen} "
            f"needs at least seqlen+1 = {seqlen + 1} tokens"
        )
    rng = random.Random(seed)
    starts = [rng.randint(0, total - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([stream[i : i + seqlen] for i in starts]).to(torch.long)


def calibration_segments(
    tokenizer: Any, source: Source, nsamples: int, seqlen: int, seed: int, split: str = "train"
) -> torch.Tensor:
    """``[nsamples, seqlen]`` random token windows of a source's split (default ``train``).

    The split is tokenized once by :func:`tokenize_corpus` (no special tokens, cached);
    window starts are uniform in ``[0, N - seqlen - 1]`` with ``random.Random(seed)``,
    so the same seed gives the same windows and the global RNG is left alone.

    Raises:
        ValueError: ``nsamples`` or ``seqlen`` below 1, or a split with fewer than
            ``seqlen + 1`` tokens.
    """
    _positive("nsamples", nsamples)
    _positive("seqlen", seqlen)
    split = canonical_split(split)
    tokens = tokenize_corpus(tokenizer, source, split)
    total = tokens.shape[-1]
    if total < seqlen + 1:
        raise PTQUserError(
            f"source {str(source)!r} split {split!r} has {total} tokens; "
            f"nsamples={nsamples} seqlen={seqlen} needs at least seqlen+1 = {seqlen + 1} tokens"
        )
    return sample_windows(tokens, nsamples, seqlen, seed)
