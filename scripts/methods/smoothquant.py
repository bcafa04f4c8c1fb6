"""``--method smoothquant``: SmoothQuant smoothing, then W8A8 (default), RTN or GPTQ weights (``--then``).

``--then gptq --bits 8 --symmetric --act-bits 8`` is SmoothQuant, GPTQ W8, then int8 activations
on GPTQ's codes (llm-compressor's W8A8 recipe).
"""
from __future__ import annotations

import argparse

from calibration.recipes import Recipe, SmoothQuantStep
from calibration.recipes.smoothquant import ACT_STATS, SEARCH_METRICS, SEARCH_SCOPES
from scripts.errors import UsageError
from scripts.methods.gptq import gptq_steps
from scripts.methods.rtn import weight_step
from scripts.methods.w8a8 import act_flags, act_mode, w8a8_step

NAME = "smoothquant"


def alpha_arg(text: str) -> float | str:
    """``auto`` or a number from 0 to 1."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alpha must be a number from 0 to 1 or 'auto', got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"--alpha must be from 0 to 1, got {value}")
    return value


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--alpha", type=alpha_arg, default=0.5,
                       help="SmoothQuant migration strength 0..1, or 'auto' (per-block grid search; default 0.5)")
    group.add_argument("--search-metric", default="mse", choices=list(SEARCH_METRICS),
                       help="what --alpha auto minimises: the block outputs' MSE (default), or the mean per-token "
                            "relative squared error (massive-activation tokens do not decide alone)")
    group.add_argument("--search-scope", default="block", choices=list(SEARCH_SCOPES),
                       help="--alpha auto: one alpha per block (default), or one per smoothing group (q/k/v, "
                            "gate/up, down, ...) searched group by group from the block's best")
    group.add_argument("--act-stat", default="max", choices=list(ACT_STATS),
                       help="activation side of SmoothQuant's scales: max|X_j| (default, the paper), or the channel's "
                            "RMS over the calibration tokens (for per-token activations: rare massive tokens "
                            "do not decide the migration)")
    group.add_argument("--no-prev-linear", dest="prev_linear", action="store_false",
                       help="smooth only norm -> linear groups, not the linear -> linear pairs (v -> o, up -> down) "
                            "where the path allows them (smoothing them is the default)")
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
    for flag, value, default in (("--search-metric", args.search_metric, "mse"),
                                 ("--search-scope", args.search_scope, "block")):
        if value != default and args.alpha != "auto":
            raise UsageError(f"{flag} {value} needs --alpha auto (a fixed alpha searches nothing)")
    smooth = SmoothQuantStep(alpha=args.alpha, prev_linear=args.prev_linear, act=act_mode(args),
                             search_metric=args.search_metric, search_scope=args.search_scope,
                             act_stat=args.act_stat)
    if then == "gptq":  # --act-granularity alone says what --alpha auto simulates
        return Recipe([smooth, *gptq_steps(args, "--method smoothquant --then gptq", allowed=("--act-granularity",))])
    return Recipe([smooth, {"w8a8": w8a8_step, "rtn": weight_step}[then](args)])
