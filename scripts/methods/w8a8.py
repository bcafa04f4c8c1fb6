"""``--method w8a8``: naive W8A8 (int8 per-channel weights, int8 per-token or static activations).

The same recipe as ``--method rtn --bits 8 --act-bits 8``. The activation flags
(``--act-bits``, ``--act-granularity``, ``--act-observer``) live here because every method
that quantizes activations through a W8A8 step (rtn, w8a8, smoothquant) reads them.
"""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe, W8A8Step
from scripts.errors import UsageError

NAME = "w8a8"

ACT_GRANULARITY = {"token": "per-token", "tensor": "static"}  # --act-granularity -> W8A8Step(act=...)


def add_act_arguments(group: argparse._ArgumentGroup) -> None:
    """The activation flags shared by ``--method rtn``, ``w8a8`` and ``smoothquant``."""
    group.add_argument("--act-bits", type=int, default=None, metavar="8",
                       help="int8 activations (only 8 is supported): --method rtn --bits 8 --act-bits 8 is naive "
                            "W8A8 (int8 symmetric per-channel absmax weights); w8a8 and smoothquant --then w8a8 "
                            "always quantize activations (default: none, rtn keeps activations float)")
    group.add_argument("--act-granularity", default=None, choices=list(ACT_GRANULARITY),
                       help="token: dynamic per-token absmax scales; tensor: one static per-tensor scale from "
                            "the calibration data (default token; also what --alpha auto simulates)")
    group.add_argument("--act-observer", default=None, choices=["minmax", "percentile", "mse"],
                       help="range observer of --act-granularity tensor activations (default minmax)")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """No flags of its own: see :func:`add_act_arguments`."""


def act_flags(args: argparse.Namespace) -> list[str]:
    """The activation flags given on the command line; ``--act-bits`` other than 8 is a user error."""
    if args.act_bits is not None and args.act_bits != 8:
        raise UsageError(f"--act-bits must be 8 (int8 activations), got {args.act_bits}; "
                         "drop it to keep activations float")
    given = {"--act-bits": args.act_bits, "--act-granularity": args.act_granularity,
             "--act-observer": args.act_observer}
    return [flag for flag, value in given.items() if value is not None]


def act_mode(args: argparse.Namespace) -> str:
    """``W8A8Step(act=...)`` / ``SmoothQuantStep(act=...)`` of ``--act-granularity`` (default per-token)."""
    return ACT_GRANULARITY[args.act_granularity or "token"]


def w8a8_step(args: argparse.Namespace) -> W8A8Step:
    """The W8A8 step of the activation flags and ``--compute``."""
    return W8A8Step(act=act_mode(args), act_observer=args.act_observer or "minmax", mode=args.compute)


def build_recipe(args: argparse.Namespace) -> Recipe:
    act_flags(args)
    return Recipe([w8a8_step(args)])
