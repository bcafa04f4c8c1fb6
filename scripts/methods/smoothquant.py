"""``--method smoothquant``: SmoothQuant smoothing, then W8A8 (default), RTN or GPTQ weights (``--then``).

``--then gptq --bits 8 --symmetric --act-bits 8`` is SmoothQuant, GPTQ W8, then int8 activations
on GPTQ's codes (llm-compressor's W8A8 recipe).
"""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe, SmoothQuantStep
from scripts.errors import UsageError
from scripts.methods.flags import add_step_arguments, step_from_args
from scripts.methods.gptq import gptq_steps
from scripts.methods.rtn import weight_step
from scripts.methods.w8a8 import act_flags, act_mode, w8a8_step

NAME = "smoothquant"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """SmoothQuantStep's flags, generated from its fields, and ``--then``."""
    add_step_arguments(group, SmoothQuantStep)
    group.add_argument("--then", default=None, choices=["w8a8", "rtn", "gptq"],
                       help="what quantizes the smoothed (or AWQ-scaled) model: W8A8 (--act-granularity, "
                            "--act-observer; smoothquant only), or weight-only RTN / GPTQ with the shared weight "
                            "flags (default: w8a8 after smoothquant, rtn after awq)")


def build_recipe(args: argparse.Namespace) -> Recipe:
    """Smoothing (``--act-granularity`` is what ``--alpha auto`` simulates), then the ``--then`` step."""
    then = args.then or "w8a8"
    flags = act_flags(args)
    weight_only = [f for f in flags if f != "--act-granularity"] if then == "rtn" else []
    if weight_only:
        raise UsageError(f"{', '.join(weight_only)} with --method smoothquant --then rtn: that step "
                         "quantizes weights only; use --then w8a8 (the default) or --then gptq --bits 8 --symmetric "
                         "--act-bits 8 for int8 activations, or drop them")
    smooth = step_from_args(SmoothQuantStep, args, act=act_mode(args))
    if then == "gptq":  # --act-granularity alone says what --alpha auto simulates
        return Recipe([smooth, *gptq_steps(args, "--method smoothquant --then gptq", allowed=("--act-granularity",))])
    return Recipe([smooth, {"w8a8": w8a8_step, "rtn": weight_step}[then](args)])
