"""``--method llm-int8``: LLM.int8() vector-wise int8 with outlier decomposition."""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe
from calibration.recipes.llm_int8 import LLMInt8Step
from scripts.errors import UsageError
from scripts.methods.flags import add_step_arguments, step_from_args
from scripts.methods.w8a8 import act_flags

NAME = "llm-int8"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """LLMInt8Step's flags, generated from its fields (``--compute`` is shared by the int8 methods)."""
    add_step_arguments(group, LLMInt8Step)


def build_recipe(args: argparse.Namespace) -> Recipe:
    """LLM.int8(); the activation flags are refused (it quantizes activations itself)."""
    flags = act_flags(args)
    if flags:
        raise UsageError(f"{', '.join(flags)} with --method llm-int8: LLM.int8() quantizes activations itself "
                         "(int8 per token, see --mode, --int8-granularity, --threshold); drop them")
    return Recipe([step_from_args(LLMInt8Step, args, compute=args.compute)])
