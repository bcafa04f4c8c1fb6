"""``--method llm-int8``: LLM.int8() vector-wise int8 with outlier decomposition."""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe
from calibration.recipes.llm_int8 import LLMInt8Step
from scripts.errors import UsageError
from scripts.methods.w8a8 import act_flags

NAME = "llm-int8"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--threshold", type=float, default=6.0,
                       help="outlier threshold on |x| (default 6.0; inf = absmax vector-wise int8, no decomposition)")
    group.add_argument("--mode", default="dynamic", choices=["dynamic", "static"],
                       help="dynamic: outlier columns per batch; static: fixed from calibration (default dynamic)")
    group.add_argument("--int8-granularity", default="vector", choices=["vector", "tensor"],
                       help="vector: per token / per output row scales; tensor: naive per-tensor absmax (default vector)")
    group.add_argument("--zero-point", action="store_true",
                       help="zeropoint (asymmetric) instead of absmax int8 rows, activations and weights: the "
                            "paper's most accurate variant (Table 1); needs --int8-granularity vector")


def build_recipe(args: argparse.Namespace) -> Recipe:
    """LLM.int8(); the activation flags are refused (it quantizes activations itself)."""
    flags = act_flags(args)
    if flags:
        raise UsageError(f"{', '.join(flags)} with --method llm-int8: LLM.int8() quantizes activations itself "
                         "(int8 per token, see --mode, --int8-granularity, --threshold); drop them")
    if args.zero_point and args.int8_granularity != "vector":
        raise UsageError("--zero-point quantizes rows: use it with --int8-granularity vector (the default)")
    return Recipe([LLMInt8Step(threshold=args.threshold, mode=args.mode, granularity=args.int8_granularity,
                               compute=args.compute, zero_point=args.zero_point)])
