"""``--method gptq``: GPTQ with the shared weight flags (--bits, --granularity, --group-size, --symmetric)."""
from __future__ import annotations

import argparse

from calibration.recipes import GPTQStep, Recipe
from scripts.errors import UsageError
from scripts.methods.w8a8 import act_flags

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


def gptq_step(args: argparse.Namespace) -> GPTQStep:
    """The GPTQ step described by the shared weight flags and the flags above."""
    return GPTQStep(
        bits=args.bits, granularity=args.granularity, group_size=args.group_size, symmetric=args.symmetric,
        blocksize=args.blocksize, damp=args.damp, act_order=args.act_order, static_groups=args.static_groups,
        true_sequential=args.true_sequential, mse=args.mse or args.mse_weighted,
        mse_weighted=args.mse_weighted, token_clip=args.token_clip,
    )


def build_recipe(args: argparse.Namespace) -> Recipe:
    """GPTQ weights; activation flags are refused (GPTQ is weight-only here)."""
    flags = act_flags(args)
    if flags:
        raise UsageError(f"{', '.join(flags)} with --method gptq: activation quantization after GPTQ is not "
                         "supported yet; use --method smoothquant --then w8a8 or --method rtn --bits 8 --act-bits 8")
    return Recipe([gptq_step(args)])
