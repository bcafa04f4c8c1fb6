"""``ptq reproduce``: the offline perplexity table on SmolLM2-135M (the README's main job).

Rows: the float model, its bf16 / fp16 downcasts, and RTN at W8 per-channel, W4
per-channel, W4 g64 and W3 g64; columns: perplexity on ``web-nt`` and ``pydocs`` (40 windows
of 512 tokens each by default), weight footprint and quantization time.

On a CPU without native bf16 / fp16 matrix units (this project's machines: AVX2 only,
where a bf16 matmul is ~8x slower than float32) the downcast rows store the weights in
the low dtype and compute in float32; ``--native-dtype`` computes in the dtype itself.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from scripts.commands.common import add_calibration_arguments, add_quiet, info
from scripts.output import write_json

HELP = "quantize smollm2-135m with the built-in methods and print the perplexity table"


@dataclass
class Row:
    label: str
    dtype: str = "float32"
    steps: list[dict[str, Any]] = field(default_factory=list)


OFFLINE_ROWS = [
    Row("fp32"),
    Row("bf16", dtype="bfloat16"),
    Row("fp16", dtype="float16"),
    Row("RTN W8 per-channel", steps=[{"step": "rtn", "bits": 8}]),
    Row("RTN W4 per-channel", steps=[{"step": "rtn", "bits": 4}]),
    Row("RTN W4 g64", steps=[{"step": "rtn", "bits": 4, "granularity": "group", "group_size": 64}]),
    Row("RTN W3 g64", steps=[{"step": "rtn", "bits": 3, "granularity": "group", "group_size": 64}]),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m", help="model (default smollm2-135m)")
    p.add_argument("--dataset", action="append", default=None, help="evaluation corpora (default web-nt and pydocs)")
    p.add_argument("--max-windows", type=int, default=40, help="windows per corpus (default 40)")
    p.add_argument("--native-dtype", action="store_true", help="compute the bf16/fp16 rows in that dtype even on CPU")
    p.add_argument("--rows", default=None, help="comma-separated row labels to run (default all)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_calibration_arguments(p)
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    from calibration.data import calibration_segments
    from calibration.models import load_model
    from calibration.recipes import Recipe
    from calibration.runner import quantize_model
    from evaluations import footprint, perplexity

    datasets = args.dataset or ["web-nt", "pydocs"]
    rows = OFFLINE_ROWS
    if args.rows:
        wanted = [r.strip() for r in args.rows.split(",")]
        unknown = [w for w in wanted if w not in {r.label for r in OFFLINE_ROWS}]
        if unknown:
            raise ValueError(f"unknown row(s) {unknown}; rows: {', '.join(r.label for r in OFFLINE_ROWS)}")
        rows = [r for r in OFFLINE_ROWS if r.label in wanted]
    t_start = time.perf_counter()
    segments = None
    results = []
    header = "| method | " + " | ".join(f"{d} ppl" for d in datasets) + " | weights | bits/weight | quant. time |"
    lines = [header, "|---|" + "---:|" * (len(datasets) + 3)]
    for row in rows:
        model, tokenizer = load_model(args.model, dtype=row.dtype)
        recipe = Recipe.from_list(row.steps) if row.steps else None
        quantized, t_quant = {}, 0.0
        if recipe is not None:
            if recipe.needs_calibration_data and segments is None:
                segments = calibration_segments(tokenizer, args.calib, args.nsamples, args.seqlen, args.seed)
            info(args, f"[{row.label}] quantizing")
            res = quantize_model(model, recipe, segments, batch_size=args.batch_size, progress=not args.quiet)
            t_quant = res.timings["quantize"]
            quantized = {name: rec.spec for name, rec in res.records.items() if rec.spec is not None}
        fp = footprint(model, quantized=quantized or None)
        label = row.label
        if row.dtype != "float32" and not args.native_dtype and next(model.parameters()).device.type == "cpu":
            model = model.to(torch.float32)  # weights rounded to the dtype, float32 compute
            label += " (weights; fp32 compute)"
        ppl = {}
        for ds in datasets:
            info(args, f"[{row.label}] evaluating on {ds}")
            r = perplexity(model, tokenizer, ds, seqlen=args.seqlen, max_windows=args.max_windows, progress=not args.quiet)
            ppl[ds] = r.to_dict()
        results.append({"method": label, "dtype": row.dtype, "recipe": row.steps, "perplexity": ppl,
                        "footprint": fp.to_dict(), "quantize_s": t_quant})
        lines.append(f"| {label} | " + " | ".join(f"{ppl[d]['ppl']:.3f}" for d in datasets)
                     + f" | {fp.human()} | {fp.bits_per_weight:.2f} | {t_quant:.1f} s |")
        del model
    print("\n".join(lines))
    total = time.perf_counter() - t_start
    print(f"\n{args.model}; evaluation: {args.max_windows} windows of {args.seqlen} tokens per corpus; total {total:.0f} s")
    if args.json:
        write_json(args.json, {"model": args.model, "rows": results, "seconds": total})
    return 0
