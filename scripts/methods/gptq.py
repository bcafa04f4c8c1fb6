"""``--method gptq``: GPTQ with the shared weight flags (--bits, --granularity, --group-size, --symmetric).

With ``--bits 8 --symmetric --act-bits 8`` the GPTQ weights then run as W8A8 layers with int8
activations (``--act-granularity``, ``--act-observer``), keeping GPTQ's codes.
"""
from __future__ import annotations

import argparse

from calibration.recipes import GPTQStep, Recipe
from calibration.recipes.step import Step
from scripts.errors import UsageError
from scripts.methods.flags import SHARED_WEIGHT_FLAGS, add_step_arguments, step_from_args
from scripts.methods.rtn import qparams_choice
from scripts.methods.w8a8 import act_flags, w8a8_step

NAME = "gptq"


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """GPTQStep's own flags, generated from its fields (the shared weight flags come from ``quantize``)."""
    add_step_arguments(group, GPTQStep, skip=SHARED_WEIGHT_FLAGS)


def gptq_step(args: argparse.Namespace) -> GPTQStep:
    """The GPTQ step described by the shared weight flags and GPTQ's own; ``--qparams`` (shared with rtn), or
    its deprecated aliases ``--mse`` / ``--mse-weighted`` (a ``DeprecationWarning``)."""
    if getattr(args, "weight_format", "int") != "int" or getattr(args, "double_quant", False):
        raise UsageError("--weight-format and --double-quant apply to --method rtn (GPTQ quantizes to the int grid)")
    return step_from_args(GPTQStep, args, qparams=qparams_choice(args), mse=False, mse_weighted=False)


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
