"""Layer-level speed of LLM.int8() against float32 ``nn.Linear``, side by side in one run.

For SmolLM2-135M's layer shapes (512 tokens; 576->576 q/o, 576->192 k/v, 576->1536 gate/up,
1536->576 down) and a large one, times (median of ``--repeats``, interleaved) the float32
``nn.Linear`` and ``Int8OutlierLinear`` in its variants: dynamic and static outlier
decomposition (``--outliers`` columns scaled past the threshold, as SmolLM2's activations
have), absmax or zeropoint rows, vector-wise without decomposition, and per-tensor. The
variants are timed round-robin, one call of each per round. Prints ms and speed-up ratios.

    python scripts/bench_llm_int8.py [--tokens 512] [--repeats 20] [--outliers 8]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch
from torch import nn

SHAPES = [(576, 576), (576, 192), (576, 1536), (1536, 576), (4096, 4096)]
# the 7 linears of one SmolLM2-135M decoder block: q, o (576->576), k, v (576->192), gate, up, down
BLOCK = {(576, 576): 2, (576, 192): 2, (576, 1536): 2, (1536, 576): 1}


def time_interleaved(fns: dict[str, Callable], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms of each function, timed round-robin (one call of each per round), so that a
    slow spell of a shared machine hits every variant alike."""
    for fn in fns.values():
        for _ in range(3):
            fn(x)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


@torch.inference_mode()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--outliers", type=int, default=8, help="input columns with |x| > threshold")
    args = p.parse_args()
    from ptq.kernels.allocator import keep_freed_memory

    keep_freed_memory()  # the same glibc settings as the ptq CLI, for every variant alike
    from ptq.kernels import choose_backend, cpu_int8_support
    from ptq.modules.llm_int8_linear import Int8OutlierLinear

    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, {args.tokens} tokens, {args.outliers} outlier columns, "
          f"median of {args.repeats} (ms; ratio = float32 time / int8 time)")
    print(f"{cpu_int8_support().describe()}; int8 backend at {args.tokens} x 576 x 576: "
          f"{choose_backend(args.tokens, 576, 576)}")
    print("| in -> out | fp32 Linear | LLM.int8 dynamic | LLM.int8 static | zeropoint dynamic | zeropoint static "
          "| vector-wise | per-tensor |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    block: dict[str, float] = {}
    for k, n in SHAPES:
        layer = nn.Linear(k, n)
        x = torch.randn(args.tokens, k)
        cols = torch.randperm(k)[: args.outliers]
        x[:, cols] *= 20
        variants = {
            "dynamic": Int8OutlierLinear.from_float(layer),
            "static": Int8OutlierLinear.from_float(layer, mode="static", outlier_idx=cols),
            "zeropoint dynamic": Int8OutlierLinear.from_float(layer, zero_point=True),
            "zeropoint static": Int8OutlierLinear.from_float(layer, mode="static", outlier_idx=cols, zero_point=True),
            "vector": Int8OutlierLinear.from_float(layer, threshold=math.inf),
            "tensor": Int8OutlierLinear.from_float(layer, threshold=math.inf, granularity="tensor"),
        }
        repeats = max(3, args.repeats // 4) if k * n > 4e6 else args.repeats
        ms = time_interleaved({"float": layer, **variants}, x, repeats)
        t_float = ms.pop("float")
        print(f"| {k} -> {n} | " + " | ".join(_cells(t_float, ms)) + " |")
        for name, t in {"float": t_float, **ms}.items():
            block[name] = block.get(name, 0.0) + BLOCK.get((k, n), 0) * t
    t_float = block.pop("float")
    print("| **one SmolLM2 block (q, k, v, o, gate, up, down)** | " + " | ".join(_cells(t_float, block)) + " |")


def _cells(t_float: float, ms: dict[str, float]) -> list[str]:
    return [f"{t_float:.2f}"] + [f"{t:.2f} ({t_float / t:.2f}x)" for t in ms.values()]


if __name__ == "__main__":
    main()
