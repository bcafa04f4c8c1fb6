"""``--method awq``: AWQ scaling and clipping, then RTN (default) or GPTQ weights (``--then gptq``).

The AWQ step searches with the weight format of the step after it (the shared weight flags
``--bits``, ``--granularity``, ``--group-size``, ``--symmetric``); ``--then`` is the flag
``--method smoothquant`` defines (w8a8 is refused here: AWQ is weight-only).
"""
from __future__ import annotations

import argparse
import dataclasses

from calibration.recipes import AWQStep, Recipe
from scripts.errors import UsageError
from scripts.methods.gptq import gptq_steps
from scripts.methods.rtn import weight_step
from scripts.methods.w8a8 import act_flags

NAME = "awq"
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AWQStep)}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--awq-search-samples", type=int, default=_DEFAULTS["search_samples"], metavar="N",
                       help="calibration segments AWQ's scale and clipping searches run on (0: all; default "
                            f"{_DEFAULTS['search_samples']}); the activation magnitudes use all of them")
    group.add_argument("--no-awq-clip", dest="awq_clip", action="store_false",
                       help="skip AWQ's weight clipping search (scales only)")


def build_recipe(args: argparse.Namespace) -> Recipe:
    """AWQ, then the ``--then`` weight quantizer (``rtn`` by default, or ``gptq``)."""
    then = args.then or "rtn"
    flags = act_flags(args)
    if then == "w8a8" or flags:
        raise UsageError(f"--method awq is weight-only: drop {', '.join(flags) or '--then w8a8'} "
                         "(use --then rtn, the default, or --then gptq)")
    if args.granularity == "tensor":
        raise UsageError("--method awq searches per output channel or per group: use --granularity channel "
                         "or --group-size N, not --granularity tensor")
    if args.awq_search_samples < 0:
        raise UsageError(f"--awq-search-samples must be 0 (all) or a positive number, got {args.awq_search_samples}")
    awq = AWQStep(search_samples=args.awq_search_samples, clip=args.awq_clip)
    weights = gptq_steps(args, "--method awq --then gptq") if then == "gptq" else [weight_step(args)]
    return Recipe([awq, *weights])
