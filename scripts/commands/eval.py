"""``ptq eval``: perplexity of a model or quantized output folder on one or more corpora."""
from __future__ import annotations

import argparse
import sys

from scripts.commands.common import add_model_arguments, add_quiet, info
from ptq.jsonable import write_json
from ptq.errors import PTQUserError

HELP = "perplexity of a model (or a ptq quantize output folder) on evaluation corpora"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--dataset", action="append", default=None,
                   help="evaluation corpus (repeatable; default web-nt): a named source or a .txt/.jsonl/folder path")
    p.add_argument("--split", default="test", help="split of the corpus (default test)")
    p.add_argument("--seqlen", type=int, default=512, help="window length in tokens (default 512)")
    p.add_argument("--max-windows", type=int, default=None, help="evaluate at most N windows (quick runs)")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: non-overlapping windows)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    from calibration.models import load_model
    from evaluations import footprint, perplexity

    datasets = args.dataset or ["web-nt"]
    if args.max_windows is not None and args.max_windows < 1:
        raise PTQUserError(f"--max-windows must be at least 1, got {args.max_windows}")
    from ptq.checkpoint import is_quantized_checkpoint, load_quantized

    if is_quantized_checkpoint(args.model):  # a ptq quantize output (packed ptq or GPTQ format)
        model, tokenizer = load_quantized(args.model, dtype=args.dtype, device=args.device)
    else:
        model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    results = {}
    for ds in datasets:
        info(args, f"evaluating {args.model} on {ds} ({args.split}), windows of {args.seqlen}")
        r = perplexity(model, tokenizer, ds, split=args.split, seqlen=args.seqlen,
                       max_windows=args.max_windows, stride=args.stride, progress=not args.quiet)
        results[ds] = r.to_dict()
        print(f"{ds}: perplexity {r.ppl:.3f} over {r.tokens} tokens ({r.windows} windows, {r.tokens_per_s:.0f} tokens/s)")
    fp = footprint(model)
    print(f"weights: {fp.human()} ({fp.bits_per_weight:.2f} bits per weight)")
    if args.json:
        write_json(args.json, {"model": args.model, "dtype": args.dtype, "perplexity": results, "footprint": fp.to_dict()})
    sys.stdout.flush()
    return 0
