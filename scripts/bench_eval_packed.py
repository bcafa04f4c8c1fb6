"""Evaluation speed of saved packed checkpoints against the float model, side by side in one run.

For each grid (W4 g64, W8 per-channel, W3 g64 by default) the float model is quantized with
min-max RTN (no calibration data: the speed does not depend on the method), saved with
``save_quantized`` and loaded back with ``load_quantized`` as ``ptq eval`` does. Then the float
model and the packed one run ``evaluations.perplexity_from_ids`` over the same windows,
alternating (float, packed, packed with the old dequantize-every-call path, float, ...) so machine
noise hits all alike; the medians' tokens/s and the ratios packed / float are printed, with the
perplexities (the default backend must give the dequantize path's perplexity).

    python -m scripts.bench_eval_packed [--windows 4] [--repeats 3] [--dtype float32|bfloat16] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile

import torch

GRIDS = {"W4 g64": "rtn w4 g64", "W8 per-channel": "rtn w8", "W3 g64": "rtn w3 g64"}


def set_backend(model: torch.nn.Module, backend: str) -> None:
    """Every ``QuantLinear``'s forward backend (``"auto"``, ``"dequant"``, ...)."""
    from ptq.modules import QuantLinear

    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.backend = backend


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--dataset", default="web-nt")
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--grids", default=",".join(GRIDS), help=f"comma-separated subset of: {', '.join(GRIDS)}")
    args = p.parse_args(argv)
    from ptq.kernels.allocator import keep_freed_memory

    keep_freed_memory()  # the same glibc settings as the ptq CLI, for every variant alike
    if args.threads:
        torch.set_num_threads(args.threads)

    from calibration import oneshot
    from calibration.data import tokenize_corpus
    from calibration.models import load_model
    from evaluations import perplexity_from_ids
    from ptq.checkpoint import load_quantized

    dtype = getattr(torch, args.dtype)
    model, tok = load_model(args.model)
    ids = tokenize_corpus(tok, args.dataset, "test")[:, : args.windows * args.seqlen]
    tokens = args.windows * args.seqlen
    float_model = model.to(dtype).eval()
    print(f"{args.model}, {args.dataset} {args.windows} windows x {args.seqlen} tokens, {args.dtype}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}, CPU {torch.backends.cpu.get_cpu_capability()}")
    print("| grid | float tok/s | packed tok/s | packed / float | dequant-every-call tok/s | dequant / float "
          "| ppl float | ppl packed | ppl dequant |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in [g.strip() for g in args.grids.split(",")]:
        q = oneshot(copy.deepcopy(model).float(), GRIDS[name], tokenizer=tok)
        with tempfile.TemporaryDirectory() as tmp:
            q.save(f"{tmp}/ckpt")
            del q
            packed, _ = load_quantized(f"{tmp}/ckpt", dtype=args.dtype)

        def run(m: torch.nn.Module, backend: str | None = None):
            if backend is not None:
                set_backend(m, backend)
            return perplexity_from_ids(m, ids, args.seqlen)

        runs: dict[str, list] = {"float": [], "packed": [], "dequant": []}
        run(float_model), run(packed, "auto")  # warm-up (the packed model builds its derived weights)
        for _ in range(args.repeats):
            runs["float"].append(run(float_model))
            runs["packed"].append(run(packed, "auto"))
            runs["dequant"].append(run(packed, "dequant"))
        tps = {k: tokens / statistics.median(r.seconds for r in v) for k, v in runs.items()}
        ppl = {k: v[0].ppl for k, v in runs.items()}
        print(f"| {name} | {tps['float']:.0f} | {tps['packed']:.0f} | {tps['packed'] / tps['float']:.2f} "
              f"| {tps['dequant']:.0f} | {tps['dequant'] / tps['float']:.2f} "
              f"| {ppl['float']:.3f} | {ppl['packed']:.3f} | {ppl['dequant']:.3f} |", flush=True)
        del packed
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
