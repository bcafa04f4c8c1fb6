"""``ptq plan``: what a ``ptq quantize`` run will need (peak memory, disk, time), from the model's
config and the recipe alone, and whether this machine can hold it. Takes ``ptq quantize``'s flags."""
from __future__ import annotations

import argparse
import json

from scripts.commands import quantize
from scripts.commands.common import info
from scripts.errors import UsageError
from scripts.preflight import ignored_data_flags, warn

HELP = "predict the peak memory, disk and time of a ptq quantize run (same flags) without loading weights"


def add_arguments(p: argparse.ArgumentParser) -> None:
    quantize.add_arguments(p, output_required=False)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    recipe = quantize.build_recipe(args)
    quantize.check_format(args)
    ignored = ignored_data_flags(args, recipe.needs_calibration_data)
    if ignored:
        warn("plan", f"this recipe uses no calibration data, so {', '.join(ignored)} would be ignored")
    from scripts.commands.quantize_stream import choose_stream

    stream, shape, verdict = choose_stream(args, recipe, "plan")
    e, cap = verdict.estimate, verdict.capacity
    if args.json:
        print(json.dumps({"model": args.model, "recipe": recipe.to_list(), "blocks": shape.num_blocks,
                          "params": shape.params, "stream": stream, **e.to_dict(),
                          "available_mib": None if cap.host is None else round((cap.host + cap.rss_now) / 2**20, 1),
                          "problems": verdict.problems}, indent=2))
    else:
        mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
        print(f"{args.model}: {shape.model_type}, {shape.num_blocks} blocks, {shape.params / 1e6:,.1f} M parameters "
              f"({args.dtype}), max {shape.max_positions} positions; recipe {recipe.describe()}"
              + ("; streamed from disk one block at a time" if stream else ""))
        print(f"peak host memory  {mib(e.host_peak)}  = " + " + ".join(f"{k} {mib(v)}" for k, v in e.parts.items())
              + "  (phases: " + ", ".join(f"{k} {mib(v)}" for k, v in e.phases.items()) + ")")
        if e.accel_peak is not None:
            print(f"accelerator       {mib(e.accel_peak)}")
        print(f"disk              {mib(e.output_bytes)} output + {mib(e.work_bytes)} work folder while running")
        print(f"time              about {e.seconds / 60:,.1f} min (" + ", ".join(
            f"{k} {v:,.0f} s" for k, v in e.seconds_parts.items()) + "; from a matmul probe, a factor 2 either way)")
        avail = "unknown" if cap.host is None else mib(cap.host + cap.rss_now)
        print(f"this machine      {avail} host memory available" +
              ("" if cap.disk is None else f", {mib(cap.disk)} free disk at the output"))
        print("verdict           " + ("fits" if verdict.fits else "does not fit: " + "; ".join(verdict.problems)))
    if not verdict.fits and not args.force:
        info(args, "ptq quantize would refuse this run (exit 2) unless --force")
        raise UsageError(verdict.problems[0])
    return 0
