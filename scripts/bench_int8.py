"""Side-by-side speed of float32 ``nn.Linear`` and the int8 paths (W8A8, LLM.int8()) on this CPU.

For each shape ``tokens x in -> out`` (SmolLM2-135M's at 512 tokens, and a few large ones):
float32 ``nn.Linear``; the whole :class:`ptq.modules.w8a8_linear.W8A8Linear` int path with per-token
dynamic and with static activations (activation quantization + int8 x int8 -> int32 + rescale); the
dynamic LLM.int8() layer (:class:`ptq.modules.llm_int8_linear.Int8OutlierLinear`, ``--outliers``
input columns past its threshold); and the W8A8 path's parts (per-token quantization,
:func:`ptq.kernels.int8_matmul`, :func:`ptq.kernels.rescale`). Median of ``--repeats`` rounds in
which the variants take turns, each timing the mean of enough calls to last ~``--min-ms``; the
thread count is the machine's (``torch.get_num_threads()``) unless ``--threads`` is given.

    python -m scripts.bench_int8 [--repeats 7] [--threads N] [--quick] [--outliers 8]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

from ptq.kernels import choose_backend, cpu_int8_support, int8_matmul, rescale
from ptq.modules.llm_int8_linear import Int8OutlierLinear
from ptq.modules.w8a8_linear import W8A8Linear, quantize_per_token

SMOL = [(512, 576, 576), (512, 576, 192), (512, 576, 1536), (512, 1536, 576)]
LARGE = [(512, 4096, 4096), (2048, 4096, 4096)]
DECODE = [(1, 576, 1536), (1, 1536, 576)]  # one token: torch._int_mm refuses M <= 16 (fbgemm or float then)


def median_ms(fns: dict[str, Callable[[], object]], repeats: int, min_ms: float) -> dict[str, float]:
    """Median over ``repeats`` rounds of each function's mean time over ``k`` calls (``k`` so a timing
    lasts ``min_ms``); the functions take turns within a round, so a slow spell of a shared machine
    hits them alike."""
    ks = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        ks[name] = max(1, int(min_ms / 1e3 / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(ks[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / ks[name] * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


@torch.inference_mode()
def bench_shape(M: int, K: int, N: int, repeats: int, min_ms: float, outliers: int) -> dict[str, float]:
    torch.manual_seed(0)
    lin = nn.Linear(K, N)
    x = torch.randn(M, K)
    x[:, torch.randperm(K)[:outliers]] *= 20  # outlier features past LLM.int8()'s threshold 6
    tok = W8A8Linear.from_float(lin, act="per-token")
    static = W8A8Linear.from_float(lin, act="static", act_scale=float(x.abs().max()) / 127)
    llm = Int8OutlierLinear.from_float(lin)
    xq, s_x = quantize_per_token(x)
    packed = tok._packed_weight(M)
    acc = int8_matmul(xq, tok.qweight, packed=packed)
    return median_ms({
        "fp32": lambda: lin(x),
        "w8a8_token": lambda: tok(x),
        "w8a8_static": lambda: static(x),
        "llm_int8": lambda: llm(x),
        "act_quant": lambda: quantize_per_token(x),
        "int8_mm": lambda: int8_matmul(xq, tok.qweight, packed=packed),
        "rescale": lambda: rescale(acc, s_x, tok.weight_scale),
    }, repeats, min_ms)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-ms", type=float, default=50.0, help="minimum duration of one timing (default 50 ms)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="SmolLM2 shapes only")
    p.add_argument("--outliers", type=int, default=8, help="input columns scaled past LLM.int8()'s threshold")
    args = p.parse_args(argv)
    from ptq.kernels.allocator import keep_freed_memory

    keep_freed_memory()  # the same glibc settings as the ptq CLI, for every variant alike
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"median of {args.repeats}; {cpu_int8_support().describe()}")
    cols = ["fp32", "w8a8_token", "w8a8_static", "llm_int8", "act_quant", "int8_mm", "rescale"]
    print(f"{'M x K -> N':>20} {'int8 backend':>12} " + " ".join(f"{c + ' ms':>15}" for c in cols)
          + f" {'fp32/token':>11} {'fp32/static':>11} {'fp32/llm':>9} {'fp32/mm':>8}")
    for M, K, N in SMOL + DECODE + ([] if args.quick else LARGE):
        r = bench_shape(M, K, N, args.repeats if M * K * N < 4e9 else 3, args.min_ms, min(args.outliers, K))
        print(f"{f'{M} x {K} -> {N}':>20} {choose_backend(M, K, N):>12} " + " ".join(f"{r[c]:15.3f}" for c in cols)
              + f" {r['fp32'] / r['w8a8_token']:11.2f} {r['fp32'] / r['w8a8_static']:11.2f} {r['fp32'] / r['llm_int8']:9.2f}"
              + f" {r['fp32'] / r['int8_mm']:8.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
