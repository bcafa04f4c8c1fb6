"""``--method gptq``: GPTQ with the shared weight flags (--bits, --granularity, --group-size, --symmetric).

With ``--bits 8 --symmetric --act-bits 8`` the GPTQ weights then run as W8A8 layers with int8
activations (``--act-granularity``, ``--act-observer``), keeping GPTQ's codes.
"""
from __future__ import annotations

import argparse

from calibration.recipes import GPTQStep, Recipe
from calibration.recipes.step import Step
from scripts.errors import UsageError
from scripts.methods.w8a8 import act_flags, w8a8_step

NAME = "gptq"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--act-order", action="store_true",
                       help="quantize columns in order of decreasing Hessian diagonal (GPTQ act-order)")
    group.add_argument("--static-groups", action="store_true",
                       help="with --group-size: fix every group's scale/zero before quantizing")
    group.add_argument("--true-sequential", action="store_true",
                       help="quantize each block's layers group by group (q/k/v, out, MLP in, MLP out), "
                            "each on inputs from the already quantized earlier groups")
    group.add_argument("--blocksize", type=int, default=128, help="GPTQ lazy-batch block size (default 128)")
    group.add_argument("--damp", type=float, default=0.01,
                       help="GPTQ dampening, a fraction of mean(diag H) added to diag H (default 0.01)")
    group.add_argument("--mse", action="store_true",
                       help="GPTQ grid search of each scale minimising the |w - q|^2.4 error (instead of min-max)")
    group.add_argument("--mse-weighted", action="store_true",
                       help="with --mse: weigh each input column's error by the Hessian diagonal (its input "
                            "energy, llama.cpp's importance matrix) in the scale search")
    group.add_argument("--token-clip", type=float, default=None, metavar="R",
                       help="scale tokens whose layer input norm exceeds R x their sequence's median down to it "
                            "before they enter the Hessian (massive-activation / attention-sink tokens); "
                            "R > 1, default off")
    group.add_argument("--diag-shrink", type=float, default=0.0, metavar="LAMBDA",
                       help="use H' = (1 - LAMBDA) H + LAMBDA diag(H): the input correlations measured on the "
                            "calibration text count only by 1 - LAMBDA, so GPTQ over-fits that text less "
                            "(0: GPTQ, default; 1: round-to-nearest)")


def gptq_step(args: argparse.Namespace) -> GPTQStep:
    """The GPTQ step described by the shared weight flags and the flags above."""
    return GPTQStep(
        bits=args.bits, granularity=args.granularity, group_size=args.group_size, symmetric=args.symmetric,
        blocksize=args.blocksize, damp=args.damp, act_order=args.act_order, static_groups=args.static_groups,
        true_sequential=args.true_sequential, mse=args.mse or args.mse_weighted,
        mse_weighted=args.mse_weighted, token_clip=args.token_clip, diag_shrink=args.diag_shrink,
    )


def gptq_steps(args: argparse.Namespace, what: str = "--method gptq", allowed: tuple[str, ...] = ()) -> list[Step]:
    """GPTQ, and with ``--act-bits 8`` a W8A8 step that keeps GPTQ's int8 grid (W8A8 with GPTQ weights).

    int8 activations need int8 weights on one symmetric per-channel grid: ``--bits 8 --symmetric``.
    ``allowed``: activation flags that mean something without ``--act-bits`` (to the caller).
    """
    flags = [f for f in act_flags(args) if f not in allowed]
    if flags and args.act_bits is None:
        raise UsageError(f"{', '.join(flags)} with {what}: int8 activations after GPTQ W8 need --act-bits 8; "
                         "drop the activation flags for weight-only GPTQ")
    if args.act_bits is None:
        return [gptq_step(args)]
    if args.bits != 8 or not args.symmetric or args.granularity != "channel":
        raise UsageError(f"--act-bits 8 with {what} runs int8 x int8 layers: they need GPTQ on int8 symmetric "
                         f"per-channel weights, --bits 8 --symmetric --granularity channel (got --bits {args.bits}"
                         f"{' --symmetric' if args.symmetric else ''} --granularity {args.granularity})")
    return [gptq_step(args), w8a8_step(args)]


def build_recipe(args: argparse.Namespace) -> Recipe:
    """GPTQ weights; with ``--act-bits 8`` (and ``--bits 8 --symmetric``) also int8 activations."""
    return Recipe(gptq_steps(args))
