"""Side-by-side speed of float32 ``nn.Linear`` and the W8A8 integer path on this CPU.

For each shape ``tokens x in -> out`` (SmolLM2-135M's at 512 tokens, and a few large ones):
float32 ``nn.Linear``; the whole :class:`ptq.modules.w8a8_linear.W8A8Linear` int path with per-token
dynamic and with static activations (activation quantization + int8 x int8 -> int32 + rescale);
and its parts (per-token quantization alone, :func:`ptq.kernels.int8_matmul` alone). Median of
``--repeats`` timings, each the mean of enough calls to last ~``--min-ms``; the thread count is the
machine's (``torch.get_num_threads()``) unless ``--threads`` is given.

    python scripts/bench_int8.py [--repeats 7] [--threads N] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

from ptq.kernels import choose_backend, cpu_int8_support, int8_matmul
from ptq.modules.w8a8_linear import W8A8Linear, quantize_per_token

SMOL = [(512, 576, 576), (512, 576, 192), (512, 576, 1536), (512, 1536, 576)]
LARGE = [(512, 4096, 4096), (2048, 4096, 4096)]
DECODE = [(1, 576, 1536), (1, 1536, 576)]  # one token: torch._int_mm refuses M <= 16 (fbgemm or float then)


def median_ms(fn: Callable[[], object], repeats: int, min_ms: float) -> float:
    """Median over ``repeats`` of the mean time of ``k`` calls (``k`` so a timing lasts ``min_ms``)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    k = max(1, int(min_ms / 1e3 / one))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        times.append((time.perf_counter() - t0) / k * 1e3)
    return statistics.median(times)


@torch.inference_mode()
def bench_shape(M: int, K: int, N: int, repeats: int, min_ms: float) -> dict[str, float]:
    torch.manual_seed(0)
    lin = nn.Linear(K, N)
    x = torch.randn(M, K)
    tok = W8A8Linear.from_float(lin, act="per-token")
    static = W8A8Linear.from_float(lin, act="static", act_scale=float(x.abs().max()) / 127)
    xq, _ = quantize_per_token(x)
    packed = tok._packed_weight(M)
    return {
        "fp32": median_ms(lambda: lin(x), repeats, min_ms),
        "w8a8_token": median_ms(lambda: tok(x), repeats, min_ms),
        "w8a8_static": median_ms(lambda: static(x), repeats, min_ms),
        "act_quant": median_ms(lambda: quantize_per_token(x), repeats, min_ms),
        "int8_mm": median_ms(lambda: int8_matmul(xq, tok.qweight, packed=packed), repeats, min_ms),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-ms", type=float, default=50.0, help="minimum duration of one timing (default 50 ms)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="SmolLM2 shapes only")
    args = p.parse_args(argv)
    from ptq.kernels.allocator import keep_freed_memory

    keep_freed_memory()  # the same glibc settings as the ptq CLI, for every variant alike
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"median of {args.repeats}; {cpu_int8_support().describe()}")
    cols = ["fp32", "w8a8_token", "w8a8_static", "act_quant", "int8_mm"]
    print(f"{'M x K -> N':>20} {'int8 backend':>12} " + " ".join(f"{c + ' ms':>15}" for c in cols)
          + f" {'fp32/token':>11} {'fp32/static':>11} {'fp32/mm':>8}")
    for M, K, N in SMOL + DECODE + ([] if args.quick else LARGE):
        r = bench_shape(M, K, N, args.repeats if M * K * N < 4e9 else 3, args.min_ms)
        print(f"{f'{M} x {K} -> {N}':>20} {choose_backend(M, K, N):>12} " + " ".join(f"{r[c]:15.3f}" for c in cols)
              + f" {r['fp32'] / r['w8a8_token']:11.2f} {r['fp32'] / r['w8a8_static']:11.2f} {r['fp32'] / r['int8_mm']:8.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
