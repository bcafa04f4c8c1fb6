"""Calibration mixtures: ``web-ot:0.5,pydocs:0.5``, sources with their shares of the tokens.

A mixture spec is a comma-separated list of ``SOURCE:SHARE``; shares are fractions of the
calibration tokens, positive, summing to 1. Every segment has the same length, so a token
share is a share of the ``nsamples`` segments: source ``i`` gets ``n_i`` segments, the
largest-remainder rounding of ``share_i * nsamples`` (ties to the earlier source), at least one
each. A plain source name or path (no ``:SHARE``) is a single source, not a mixture.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .corpus import Source, resolve_source
from .registry import source_domain
from ptq.errors import PTQUserError

__all__ = ["MixturePart", "parse_mixture", "mixture_counts", "is_mixture", "calibration_domains"]

SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class MixturePart:
    """One source of a mixture and its share of the calibration tokens."""

    source: str
    share: float


def is_mixture(spec: Source) -> bool:
    """Whether ``spec`` is a ``SOURCE:SHARE,...`` list rather than one source name or path.

    A registered name or an existing path is a single source even if it holds ``:`` or ``,``.
    """
    name = os.fspath(spec)
    if ":" not in name:
        return False
    try:
        resolve_source(name)
    except ValueError:
        return True
    return False


def _share(text: str, part: str) -> float:
    try:
        share = float(text)
    except ValueError:
        raise PTQUserError(f"calibration mixture part {part!r}: the share {text!r} is not a number; "
                         "write SOURCE:SHARE, e.g. web-ot:0.5,pydocs:0.5") from None
    if not math.isfinite(share) or share <= 0:
        raise PTQUserError(f"calibration mixture part {part!r}: a share must be a number above 0, got {text}")
    return share


def parse_mixture(spec: Source) -> list[MixturePart]:
    """The parts of a mixture spec, in the order written; a single source is one part of share 1.

    Raises:
        ValueError: a part without ``:SHARE``, a share that is not a positive number, shares
            not summing to 1, a source named twice, or an unknown source.
    """
    if not is_mixture(spec):
        resolve_source(spec)  # unknown source: the registry's message
        return [MixturePart(os.fspath(spec), 1.0)]
    parts = []
    for part in os.fspath(spec).split(","):
        source, sep, share = part.strip().rpartition(":")
        if not sep or not source:
            raise PTQUserError(f"calibration mixture part {part!r} has no share; write SOURCE:SHARE for every "
                             "source, e.g. web-ot:0.5,pydocs:0.5")
        try:
            resolve_source(source)
        except ValueError as exc:
            raise PTQUserError(f"calibration mixture part {part!r}: {exc}") from None
        parts.append(MixturePart(source, _share(share, part)))
    names = [p.source for p in parts]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise PTQUserError(f"calibration mixture names {twice!r} twice; give each source once with its total share")
    total = sum(p.share for p in parts)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise PTQUserError(f"calibration mixture shares sum to {total:g}, not 1: "
                         + ", ".join(f"{p.source}:{p.share:g}" for p in parts))
    return parts


def mixture_counts(parts: list[MixturePart], nsamples: int) -> list[int]:
    """Segments per part: largest-remainder rounding of ``share * nsamples``, summing to ``nsamples``.

    Raises:
        ValueError: a part would get no segment (``nsamples`` too small for its share).
    """
    exact = [p.share * nsamples for p in parts]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(parts)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: nsamples - sum(counts)]:
        counts[i] += 1
    empty = [p.source for p, n in zip(parts, counts) if n == 0]
    if empty:
        raise PTQUserError(f"calibration mixture: {empty[0]!r} gets no segment of {nsamples}; "
                         "raise its share or nsamples")
    return counts


def calibration_domains(spec: Source) -> set[str]:
    """The domains (:func:`calibration.data.registry.source_domain`) of a calibration source or mixture:
    an evaluation text of one of them is in domain."""
    return {source_domain(p.source) for p in parse_mixture(spec)}
