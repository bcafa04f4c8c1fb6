"""GPTQ's and SmoothQuant's time as a multiple of one float32 forward pass: two-pass against one-pass, float32 against bf16.

T = one float32 forward pass of all decoder blocks over the calibration tokens (the runner's
re-run of an unchanged model). Each variant runs in its own process, one after the other in this
run (so each peak RSS is its own): T, T under bf16 autocast, GPTQ (W4 per-channel act-order by
default) with ``passes="two"`` and ``passes="one"``, each in float32 and under bf16 autocast (there
also with the Hessian's products in bf16, ``hessian_products="bfloat16"``), SmoothQuant (alpha 0.5)
then W8A8 per-token with its statistics sequential (two passes per block) and from the float model
(one pass), and T again at the end (how much the machine's speed drifted during the run).

    python -m scripts.bench_passes                     # SmolLM2-135M, 128 x 512 tokens of web-ot
    python -m scripts.bench_passes --num-layers 10     # first 10 blocks only (same ratios, a third of the time)
    python -m scripts.bench_passes --tiny              # a 2-block toy, seconds
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = {  # name: (what, passes, autocast, Hessian products)
    "T float32": ("pass", None, None, None),
    "T bf16 autocast": ("pass", None, "bfloat16", None),
    "GPTQ two-pass float32": ("gptq", "two", None, "exact"),
    "GPTQ one-pass float32": ("gptq", "one", None, "exact"),
    "GPTQ two-pass bf16": ("gptq", "two", "bfloat16", "exact"),
    "GPTQ one-pass bf16": ("gptq", "one", "bfloat16", "exact"),
    "GPTQ two-pass bf16 + bf16 Hessian": ("gptq", "two", "bfloat16", "bfloat16"),
    "GPTQ one-pass bf16 + bf16 Hessian": ("gptq", "one", "bfloat16", "bfloat16"),
    "SmoothQuant W8A8 sequential float32": ("smoothquant", "sequential", None, None),
    "SmoothQuant W8A8 float-model float32": ("smoothquant", "float-model", None, None),
}


def run_variant(args: argparse.Namespace) -> dict:
    """Load, then time the variant ``args.variant`` in this process."""
    import torch

    from calibration.models import find_decoder_blocks
    from calibration.recipes import GPTQStep, Recipe, SmoothQuantStep, W8A8Step
    from calibration.runner import catch_block_inputs, peak_rss_mb, quantize_model
    from calibration.runner.block_inputs import advance_block, autocast_dtype
    from ptq.kernels.allocator import keep_freed_memory
    from scripts.bench_gptq import load

    keep_freed_memory()
    what, passes, autocast, products = VARIANTS[args.variant]
    model, segments, _ = load(args)
    if what == "pass":
        blocks = find_decoder_blocks(model)[1]
        with torch.inference_mode():
            inputs = catch_block_inputs(model, blocks[0], segments, args.batch_size)
            t0 = time.perf_counter()
            for block in blocks:
                inputs = advance_block(block, inputs, autocast_dtype(autocast))
            seconds = time.perf_counter() - t0
    elif what == "smoothquant":  # alpha 0.5, per-token int8 activations
        recipe = Recipe([SmoothQuantStep(alpha=0.5, statistics=passes), W8A8Step(act="per-token")])
        res = quantize_model(model, recipe, segments, batch_size=args.batch_size, progress=False, autocast=autocast)
        seconds = res.timings["quantize"]
    else:
        step = GPTQStep(bits=args.bits, granularity="group" if args.group_size else "channel",
                        group_size=args.group_size or None, act_order=True, passes=passes,
                        hessian_products=products)
        res = quantize_model(model, Recipe([step]), segments, batch_size=args.batch_size, progress=False,
                             autocast=autocast)
        seconds = res.timings["quantize"]
    return {"variant": args.variant, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    from scripts.bench_gptq import add_load_arguments

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(ap, group_size=0)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset (default: all)")
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    if args.tiny:
        args.nsamples, args.seqlen = min(args.nsamples, 16), min(args.seqlen, 64)
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    names = [v.strip() for v in args.variants.split(",")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if "T float32" not in names:
        names.insert(0, "T float32")
    names.append("T float32")  # again at the end: the drift of the machine's speed during the run
    own, skip = [], False  # this run's flags for each child, without --variants VALUE
    for a in sys.argv[1:]:
        if skip or a.startswith("--variants="):
            skip = False
        elif a == "--variants":
            skip = True
        else:
            own.append(a)
    rows = []
    for name in names:
        out = subprocess.run([sys.executable, "-m", "scripts.bench_passes", *own, "--variant", name],
                             capture_output=True, text=True, check=True, env=os.environ)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {name}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    T = rows[0]["seconds"]
    print(f"{args.nsamples} x {args.seqlen} tokens, batch {args.batch_size}, {args.num_layers or 'all'} blocks, "
          f"W{args.bits} {'g' + str(args.group_size) if args.group_size else 'per-channel'} act-order; "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')} OMP threads")
    print("| variant | seconds | x T | peak RSS MiB |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['seconds']:.1f} | {r['seconds'] / T:.2f} | {r['peak_rss_mb']:.0f} |")
    print(f"T drift during the run: {rows[-1]['seconds'] / T:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "T": T, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
