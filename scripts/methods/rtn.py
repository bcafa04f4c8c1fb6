"""``--method rtn``: weight-only round-to-nearest (the shared weight flags of quantize).

With ``--act-bits 8`` (and ``--bits 8``) it is naive W8A8 instead, the recipe of ``--method w8a8``.
"""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe, RTNStep
from scripts.errors import UsageError
from scripts.methods.flags import add_step_arguments
from scripts.methods.w8a8 import act_flags, w8a8_step
from ptq.errors import PTQUserError

NAME = "rtn"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    add_step_arguments(group, RTNStep)
    group.add_argument("--percentile", type=float, default=None, help="percentile for --observer percentile (default 99.99)")


def weight_step(args: argparse.Namespace) -> RTNStep:
    """The RTN step described by the shared weight flags (used by other methods too)."""
    observer_args = {}
    if args.percentile is not None:
        if args.observer != "percentile":
            raise PTQUserError("--percentile only applies to --observer percentile")
        observer_args["percentile"] = args.percentile
    return RTNStep(
        bits=args.bits, granularity=args.granularity, group_size=args.group_size,
        symmetric=args.symmetric, observer=args.observer, observer_args=observer_args,
    )


def w8a8_conflicts(args: argparse.Namespace) -> list[str]:
    """The weight flags that W8A8 (int8 symmetric per-channel absmax weights) cannot honour."""
    conflicts = []
    if args.bits != 8:
        conflicts.append(f"--bits {args.bits}")
    if args.granularity != "channel":
        conflicts.append(f"--granularity {args.granularity}" + (f" --group-size {args.group_size}"
                                                                 if args.group_size is not None else ""))
    if args.observer != RTNStep.observer:
        conflicts.append(f"--observer {args.observer}")
    if args.percentile is not None:
        conflicts.append(f"--percentile {args.percentile:g}")
    return conflicts


def build_recipe(args: argparse.Namespace) -> Recipe:
    """RTN weights; with ``--act-bits 8``, W8A8 (weights must then be --bits 8 per channel)."""
    flags = act_flags(args)
    if args.act_bits is None:
        if flags:
            raise UsageError(f"{', '.join(flags)} only apply with --act-bits 8 (--method rtn keeps activations "
                             "float without it); add --bits 8 --act-bits 8 for W8A8, or drop them")
        return Recipe([weight_step(args)])
    conflicts = w8a8_conflicts(args)
    if conflicts:
        raise UsageError(f"--method rtn --act-bits 8 is W8A8 (int8 symmetric per-channel absmax weights), which "
                         f"cannot honour {', '.join(conflicts)}; use --bits 8 with no group, tensor or observer "
                         "weight options, or drop --act-bits for weight-only RTN")
    return Recipe([w8a8_step(args)])
