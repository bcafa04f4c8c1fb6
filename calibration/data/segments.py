"""Random calibration windows, as in the GPTQ reference ``datautils.py``."""

from __future__ import annotations

import random
from typing import Any

import torch

from .bos import choose_bos
from .corpus import Source
from .mixture import mixture_counts, parse_mixture
from .splits import canonical_split
from .tokens import tokenize_corpus
from ptq.errors import PTQUserError

__all__ = ["calibration_segments", "calibration_bos", "sample_windows", "BOS_CHOICES"]

#: How a user names the ``bos`` argument (``--calib-bos``, a grid config's ``[calibration] bos``).
BOS_CHOICES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


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


def calibration_bos(tokenizer: Any, bos: bool | None = None) -> int | None:
    """The BOS id every calibration segment starts with, or ``None`` for raw windows.

    ``bos=None`` (default): the tokenizer's own choice, :func:`calibration.data.bos.bos_token_id`
    (BOS exactly when the tokenizer adds one in front of every text). ``False``: never (the GPTQ
    paper's protocol). ``True``: the tokenizer's ``bos_token_id`` even if it does not add it
    (forcing it on a model not trained with it only approximates one that was).
    """
    return choose_bos(tokenizer, bos, "BOS in calibration segments was asked for, but the tokenizer has no BOS token")


def _source_windows(tokenizer: Any, source: Source, split: str, nsamples: int, seqlen: int, length: int,
                    seed: int) -> torch.Tensor:
    tokens = tokenize_corpus(tokenizer, source, split)
    total = tokens.shape[-1]
    if total < length + 1:
        need = "seqlen+1" if length == seqlen else "seqlen (BOS + seqlen-1 sampled tokens, +1)"
        raise PTQUserError(
            f"source {str(source)!r} split {split!r} has {total} tokens; "
            f"nsamples={nsamples} seqlen={seqlen} needs at least {need} = {length + 1} tokens"
        )
    return sample_windows(tokens, nsamples, length, seed)


def calibration_segments(
    tokenizer: Any, source: Source, nsamples: int, seqlen: int, seed: int, split: str = "train",
    bos: bool | None = None,
) -> torch.Tensor:
    """``[nsamples, seqlen]`` random token windows of a source's split (default ``train``).

    The split is tokenized once by :func:`tokenize_corpus` (no special tokens, cached);
    window starts are uniform in ``[0, N - L - 1]`` with ``random.Random(seed)``,
    so the same seed gives the same windows and the global RNG is left alone.

    ``source`` may be a mixture ``"web-ot:0.5,pydocs:0.5"`` (:mod:`calibration.data.mixture`):
    each source gets its share of the ``nsamples`` segments, sampled from it with ``seed`` as a
    single source would be, and the parts are stacked in the order written. A single source
    gives exactly the windows it gave before mixtures existed.

    BOS (:func:`calibration_bos`; by default exactly when the tokenizer adds one): a segment
    is ``[BOS] + L`` sampled tokens with ``L = seqlen - 1``, so the shape stays
    ``[nsamples, seqlen]``; without BOS ``L = seqlen``.

    Raises:
        ValueError: ``nsamples`` or ``seqlen`` below 1 (2 with BOS), a bad mixture, or a split
            with fewer than ``L + 1`` tokens.
    """
    _positive("nsamples", nsamples)
    _positive("seqlen", seqlen)
    split = canonical_split(split)
    bos_id = calibration_bos(tokenizer, bos)
    length = seqlen - (bos_id is not None)
    if length < 1:
        raise PTQUserError(f"seqlen must be at least 2 when segments start with BOS, got {seqlen}")
    parts = parse_mixture(source)
    counts = mixture_counts(parts, nsamples) if len(parts) > 1 else [nsamples]
    segments = torch.cat([_source_windows(tokenizer, p.source, split, n, seqlen, length, seed)
                          for p, n in zip(parts, counts)])
    if bos_id is not None:
        segments = torch.cat([torch.full((nsamples, 1), bos_id, dtype=torch.long), segments], dim=1)
    return segments
