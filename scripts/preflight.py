"""Checks a command makes before it loads any weights: the model's positions, options the method
ignores, the calibration corpus's length, and the plan (memory, disk, time) against this machine.

A mistake is a :class:`~scripts.errors.UsageError` (one line, exit 2); a plan the machine cannot
hold is refused the same way unless ``--force``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from scripts.errors import UsageError

#: ``ptq quantize`` flags that only matter to a recipe that reads calibration data.
DATA_FLAGS = ("calib", "nsamples", "seqlen", "seed", "batch_size", "autocast")


class Explicit(argparse.Action):
    """``store`` that also notes the flag was given on the command line (``args._explicit``), so an
    option left at its default can be told from one the user typed."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        setattr(namespace, self.dest, values)
        given = set(getattr(namespace, "_explicit", set()))
        given.add(self.dest)
        namespace._explicit = given


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def warn(command: str, message: str) -> None:
    """A warning line on stderr (printed even with ``--quiet``: it is about the user's input)."""
    print(f"ptq {command}: warning: {message}", file=sys.stderr, flush=True)


def ignored_data_flags(args: argparse.Namespace, needs_data: bool) -> list[str]:
    """The calibration flags given to a recipe that uses no calibration data."""
    if needs_data:
        return []
    given = getattr(args, "_explicit", set())
    return [flag(d) for d in DATA_FLAGS if d in given]


def check_seqlen(shape: Any, seqlen: int, name: str, what: str = "--seqlen") -> None:
    """``UsageError`` if ``seqlen`` is longer than the positions the model was built for."""
    if isinstance(seqlen, int) and seqlen < 1:
        raise UsageError(f"{what} must be at least 1, got {seqlen}")
    limit = shape.max_positions
    if limit and seqlen > limit:
        raise UsageError(f"{what} {seqlen} is longer than the {limit} positions of {name} "
                         f"(max_position_embeddings in its config); use {what} {min(512, limit)} or at most {limit}")


def check_corpus(tokenizer: Any, source: str, nsamples: int, seqlen: int, command: str = "quantize") -> None:
    """Tokenize the calibration split now (cached for the run) and check it holds the windows:
    fewer than ``seqlen + 1`` tokens is an error; fewer than ``nsamples x seqlen`` a warning (the
    random windows then overlap, so the calibration sees the same tokens several times)."""
    from calibration.data.tokens import tokenize_corpus

    total = tokenize_corpus(tokenizer, source, "train").shape[-1]
    if total < seqlen + 1:
        raise UsageError(f"calibration corpus {source} has {total} tokens, too few for one window of --seqlen "
                         f"{seqlen}; use a longer corpus or --seqlen {max(total - 1, 1)} or less")
    if total < nsamples * seqlen:
        warn(command, f"calibration corpus {source} has {total} tokens, fewer than --nsamples {nsamples} x --seqlen "
                      f"{seqlen} = {nsamples * seqlen}: the windows overlap and repeat tokens; a longer corpus or fewer "
                      "samples gives a fairer calibration")


def enforce(verdict: Any, force: bool, command: str) -> None:
    """Refuse a run the machine cannot hold (``UsageError``, the first problem), or warn with ``--force``."""
    if verdict.fits:
        return
    if force:
        for p in verdict.problems:
            warn(command, f"{p} (--force: going ahead)")
        return
    more = f" ({len(verdict.problems) - 1} more problem(s): see ptq plan)" if len(verdict.problems) > 1 else ""
    raise UsageError(f"{verdict.problems[0]}; pass --force to try anyway{more}")


def probe_rate(shape: Any, device: Any) -> float:
    """FLOP/s of the model's own ``[512, hidden] x [hidden, intermediate]`` matmul on ``device``."""
    from calibration.plan import matmul_rate

    widest = max(max(o, i) for o, i in shape.linears.values())
    return matmul_rate(shape.hidden, widest, m=512, dtype=shape.dtype, device=device)
