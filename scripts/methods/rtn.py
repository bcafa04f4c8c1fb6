"""``--method rtn``: weight-only round-to-nearest (the shared weight flags of quantize).

With ``--act-bits 8`` (and ``--bits 8``) it is naive W8A8 instead, the recipe of ``--method w8a8``.
"""
from __future__ import annotations

import argparse
import warnings

from calibration.recipes import Recipe, RTNStep
from ptq.choosers import qparams_names
from scripts.errors import UsageError
from scripts.methods.flags import add_step_arguments
from scripts.methods.w8a8 import act_flags, w8a8_step
from ptq.errors import PTQUserError

NAME = "rtn"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--qparams", default=None, choices=qparams_names(),
                       help="how each (scale, zero) is chosen, for rtn and gptq: minmax (default), mse (GPTQ's "
                            "shrink search), mse-weighted (gptq only: errors weighted by the Hessian diagonal), "
                            "hqq (half-quadratic optimisation of the zero point, float16 zeros), hqq-int (HQQ's solver "
                            "on the scale with integer zeros, 0 kept on the grid), q4_0 (llama.cpp's Q4_0 "
                            "rule: signed absmax per group to the -8 level; --group-size 32 exports as gguf:Q4_0)")
    group.add_argument("--weight-format", default="int", choices=["int", "nf4", "fp4"],
                       help="rtn: int (the affine grid, default), or QLoRA's 4-bit code books nf4 / fp4 with one "
                            "absmax per block of --group-size (default 64)")
    group.add_argument("--double-quant", action="store_true",
                       help="with --weight-format nf4/fp4: quantize the absmax constants to 8 bits (blocks of 256)")
    add_step_arguments(group, RTNStep)
    group.add_argument("--percentile", type=float, default=None, help="percentile for --observer percentile (default 99.99)")


def deprecated_flag(old: str, new: str) -> None:
    """Warn (``DeprecationWarning``, shown on the command line) that flag ``old`` is now ``new``."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", DeprecationWarning)
        warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                      DeprecationWarning, stacklevel=3)


def qparams_choice(args: argparse.Namespace) -> str:
    """``--qparams``, or the chooser its deprecated aliases ``--mse`` / ``--mse-weighted`` (gptq) name."""
    old = "mse-weighted" if getattr(args, "mse_weighted", False) else "mse" if getattr(args, "mse", False) else None
    if old is not None:
        deprecated_flag(f"--{old}", f"--qparams {old}")
        if args.qparams not in (None, old):
            raise UsageError(f"--{old} means --qparams {old}, which contradicts --qparams {args.qparams}; drop --{old}")
    return args.qparams or old or "minmax"


def weight_step(args: argparse.Namespace) -> RTNStep:
    """The RTN step described by the shared weight flags (used by other methods too)."""
    observer_args = {}
    if args.percentile is not None:
        if args.observer != "percentile":
            raise PTQUserError("--percentile only applies to --observer percentile")
        observer_args["percentile"] = args.percentile
    qparams = args.qparams or "minmax"
    if qparams != "minmax" and args.observer != "minmax":
        raise UsageError(f"--qparams {qparams} and --observer {args.observer} both choose the weight range; "
                         "give one of them")
    fmt = getattr(args, "weight_format", "int")
    if fmt != "int":
        if args.bits != 4 or args.symmetric or args.granularity == "tensor" or qparams != "minmax" \
                or args.observer != "minmax":
            raise UsageError(f"--weight-format {fmt} is a 4-bit code book with one absmax per block: it takes "
                             "--group-size (default 64) but no --bits other than 4, --symmetric, --granularity "
                             "tensor, --qparams or --observer")
        return RTNStep(bits=4, granularity="group", group_size=args.group_size or 64, weight_format=fmt,
                       double_quant=args.double_quant)
    if getattr(args, "double_quant", False):
        raise UsageError("--double-quant quantizes the absmax constants of --weight-format nf4 / fp4; add one")
    return RTNStep(
        bits=args.bits, granularity=args.granularity, group_size=args.group_size,
        symmetric=args.symmetric, observer=args.observer, observer_args=observer_args, qparams=qparams,
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
    if args.qparams not in (None, "minmax"):
        conflicts.append(f"--qparams {args.qparams}")
    if args.weight_format != "int" or args.double_quant:
        conflicts.append(f"--weight-format {args.weight_format}" + (" --double-quant" if args.double_quant else ""))
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
