"""``--method w8a8``: naive W8A8 (int8 per-channel weights, int8 per-token or static activations)."""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe, W8A8Step

NAME = "w8a8"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--act", default="per-token", choices=["per-token", "static"],
                       help="W8A8 activations: per-token dynamic absmax, or per-tensor static from calibration "
                            "(default per-token; also used by --method smoothquant)")
    group.add_argument("--act-observer", default="minmax", choices=["minmax", "percentile", "mse"],
                       help="range observer of static activations (default minmax)")


def w8a8_step(args: argparse.Namespace) -> W8A8Step:
    return W8A8Step(act=args.act, act_observer=args.act_observer, mode=args.compute)


def build_recipe(args: argparse.Namespace) -> Recipe:
    return Recipe([w8a8_step(args)])
