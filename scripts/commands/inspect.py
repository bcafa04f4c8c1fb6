"""``ptq inspect``: per-layer activation statistics, to see where the outliers are."""
from __future__ import annotations

import argparse

from calibration.data.segments import BOS_CHOICES
from scripts.commands.common import add_calibration_arguments, add_model_arguments, add_quiet
from ptq.jsonable import write_json
from ptq.errors import PTQUserError

HELP = "per-layer activation statistics (max |x|, outlier channels, kurtosis) on calibration data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_calibration_arguments(p, nsamples=16)
    p.add_argument("--threshold", type=float, default=6.0, help="outlier threshold on |x| (default 6.0, LLM.int8())")
    p.add_argument("--json", default=None, help="also write the statistics to this JSON file")
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    from calibration.data import calibration_segments
    from calibration.models import load_model
    from calibration.recipes import ActivationStatsStep, Recipe
    from calibration.runner import quantize_model

    if args.threshold <= 0:
        raise PTQUserError(f"--threshold must be positive, got {args.threshold}")
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    segments = calibration_segments(tokenizer, args.calib, args.nsamples, args.seqlen, args.seed,
                                    bos=BOS_CHOICES[args.calib_bos])
    step = ActivationStatsStep(threshold=args.threshold)
    quantize_model(model, Recipe([step]), segments, batch_size=args.batch_size, progress=not args.quiet,
                   autocast=args.autocast)
    print(f"| layer | max abs x | channels >= {args.threshold:g} | fraction | kurtosis |")
    print("|---|---:|---:|---:|---:|")
    for name, s in step.summary.items():
        print(f"| {name} | {s['max_abs']:.2f} | {s['outlier_channels']} / {s['channels']} | "
              f"{s['outlier_fraction']:.3f} | {s['kurtosis']:.1f} |")
    if args.json:
        write_json(args.json, {"model": args.model, "calib": args.calib, "nsamples": args.nsamples,
                               "seqlen": args.seqlen, "seed": args.seed, "threshold": args.threshold,
                               "layers": step.summary})
    return 0
