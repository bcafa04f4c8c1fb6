"""``--method rtn``: weight-only round-to-nearest (the shared weight flags of quantize)."""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe, RTNStep

NAME = "rtn"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--observer", default="minmax", help="range of each weight unit: minmax, percentile, mse (default minmax)")
    group.add_argument("--percentile", type=float, default=None, help="percentile for --observer percentile (default 99.99)")


def weight_step(args: argparse.Namespace) -> RTNStep:
    """The RTN step described by the shared weight flags (used by other methods too)."""
    observer_args = {}
    if args.percentile is not None:
        if args.observer != "percentile":
            raise ValueError("--percentile only applies to --observer percentile")
        observer_args["percentile"] = args.percentile
    return RTNStep(
        bits=args.bits, granularity=args.granularity, group_size=args.group_size,
        symmetric=args.symmetric, observer=args.observer, observer_args=observer_args,
    )


def build_recipe(args: argparse.Namespace) -> Recipe:
    return Recipe([weight_step(args)])
