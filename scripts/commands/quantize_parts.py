"""What a ``ptq quantize`` run is made of besides the runner: its plan against this machine, its
calibration segments and its ``ptq.json`` report (shared by the in-memory and the streamed run, and
by ``ptq plan``)."""
from __future__ import annotations

import argparse

from calibration import distributed
from calibration.data.segments import BOS_CHOICES
from scripts.commands.common import info
from scripts.preflight import check_seqlen, probe_rate
from scripts.versions import versions


def plan_run(args: argparse.Namespace, recipe, stream: bool = False):
    """``(shape, verdict)``: the model's shapes from its config and the run's plan against this machine
    (``stream``: the model streamed from disk one block at a time)."""
    from calibration.models.loading import resolve_device
    from calibration.plan import Capacity, RunSpec, current_rss, estimate, judge, model_shape

    shape = model_shape(args.model, args.dtype)
    if recipe.needs_calibration_data:
        check_seqlen(shape, args.seqlen, args.model)
    device = resolve_device(args.device)
    spec = RunSpec(recipe.to_list(), recipe.needs_calibration_data, args.nsamples, args.seqlen, args.batch_size,
                   device=device, output_format=args.format, work_folder=not stream, stream=stream)
    est = estimate(shape, spec, current_rss(), probe_rate(shape, device))
    return shape, judge(est, Capacity.measure(args.output, device))


def plan_line(verdict) -> str:
    e = verdict.estimate
    accel = f", accelerator {e.accel_peak / 2**20:,.0f} MiB" if e.accel_peak is not None else ""
    return (f"plan: peak host memory about {e.host_peak / 2**20:,.0f} MiB{accel}; output {e.output_bytes / 2**20:,.0f} "
            f"MiB (+{e.work_bytes / 2**20:,.0f} MiB work folder while running); about {e.seconds / 60:,.1f} min")


def make_segments(args: argparse.Namespace, tokenizer, data: dict | None):
    """``(segments, bos)``: the calibration token windows (``None`` without data) and the BOS id put first."""
    from calibration.data import calibration_bos, calibration_segments

    if not data:
        return None, None
    bos = calibration_bos(tokenizer, BOS_CHOICES[args.calib_bos])
    info(args, f"calibration: {args.nsamples} x {args.seqlen} tokens of {args.calib}, seed {args.seed}"
         + (f", BOS {bos} first" if bos is not None else ", no BOS"))
    return calibration_segments(tokenizer, args.calib, args.nsamples, args.seqlen, args.seed,
                                bos=bos is not None), bos


def build_report(args: argparse.Namespace, recipe, data: dict | None, bos, verdict, result, t_load: float) -> dict:
    """``ptq.json``: the model, recipe, calibration data, versions, the plan and the runner's result."""
    report = {
        "model": args.model,
        "dtype": args.dtype,
        "recipe": recipe.to_list(),
        "data": {**data, "bos": bos} if data else None,
        "versions": versions(),
        "plan": verdict.estimate.to_dict(),
        **({"processes": distributed.world_size()} if distributed.active() else {}),
        **result.to_json(),
    }
    report["timings_s"]["load"] = round(t_load, 3)
    return report
