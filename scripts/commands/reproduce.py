"""``ptq reproduce``: the offline perplexity table on SmolLM2-135M (the README's main job).

It is ``ptq table offline`` (the preset ``scripts/grid/presets/offline.toml``): calibrate on
``web-ot`` (128 x 512 tokens, seed 0), evaluate on ``web-nt`` and ``pydocs`` (40 windows of
512 tokens each); rows fp32, its bf16 / fp16 downcasts, RTN and GPTQ at W8 / W4 / W3 and the
methods later added to the preset. Prints the Markdown table (perplexity ± SE over windows, the
change against fp32 ± its paired SE with ``≈`` when inside the noise, KL to fp32 and top-1
agreement from fp32 logits computed once per corpus) and writes CSV, LaTeX and the perplexity-vs-bits plot into ``--out``. Finished cells are kept
in ``OUT/results.jsonl``: an interrupted run resumes, ``--fresh`` recomputes everything.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from scripts.commands import table
from scripts.commands.common import add_quiet

HELP = "the offline perplexity table of smollm2-135m (= ptq table offline)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m", help="the model of the table (default smollm2-135m)")
    p.add_argument("--out", default="ptq-reproduce", help="folder of the table files and plot (default ptq-reproduce)")
    p.add_argument("--results", default=None, help="results store (default OUT/results.jsonl)")
    p.add_argument("--calib", default=None, help="replace the calibration corpus (default web-ot; a mixture such as "
                                                 "web-ot:0.5,pydocs:0.5 works too)")
    p.add_argument("--fresh", action="store_true", help="recompute every cell instead of reusing the results store")
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    results = Path(args.results or Path(args.out) / "results.jsonl")
    if args.fresh and results.exists():
        results.unlink()
    return table.run(argparse.Namespace(
        config="offline", results=str(results), out=args.out, delta=True, no_published=False,
        model=[f"SmolLM2-135M={args.model}"], dataset=None, calib=args.calib, render_only=False, quiet=args.quiet,
    ))
