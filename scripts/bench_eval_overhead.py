"""Evaluation overhead: tokens/s of ``evaluations.perplexity`` vs a bare ``model(input_ids)`` loop.

Both run over the same windows in one process, alternating (bare, perplexity, bare, ...)
so machine noise hits both; the ratio of medians is printed. Target: >= 0.95.

    python scripts/bench_eval_overhead.py [--model smollm2-135m] [--windows 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--dataset", default="web-nt")
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from ptq.kernels.allocator import keep_freed_memory

    keep_freed_memory()  # the same glibc settings as the ptq CLI, for every variant alike

    from calibration.data import tokenize_corpus
    from calibration.models import load_model
    from evaluations import perplexity_from_ids

    model, tok = load_model(args.model)
    ids = tokenize_corpus(tok, args.dataset, "test")[:, : args.windows * args.seqlen]
    batches = ids.reshape(args.windows, 1, args.seqlen)

    @torch.inference_mode()
    def bare() -> float:
        t = time.perf_counter()
        for x in batches:
            model(input_ids=x, use_cache=False).logits
        return time.perf_counter() - t

    def evaluate() -> float:
        return perplexity_from_ids(model, ids, args.seqlen).seconds

    bare()  # warm-up
    times: dict[str, list[float]] = {"bare": [], "perplexity": []}
    for _ in range(args.repeats):
        times["bare"].append(bare())
        times["perplexity"].append(evaluate())
    tokens = args.windows * args.seqlen
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    print(f"{args.model}, {args.windows} windows x {args.seqlen} tokens, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print("| loop | tokens/s |\n|---|---:|")
    for k, v in tps.items():
        print(f"| {k} | {v:.0f} |")
    print(f"ratio perplexity / bare = {tps['perplexity'] / tps['bare']:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
