"""Time a whole GPTQ quantization and show where the time goes.

Default: SmolLM2-135M, W4 g64 act-order, 128 x 512 calibration tokens of ``web-ot``, on the
CPU. Prints the time of each phase (catching block-0 inputs, the forward passes that feed
the Hessians, Hessian accumulation, Cholesky / inversion, the GPTQ column loop, the re-run of
each quantized block) and the peak RSS.

    python scripts/bench_gptq.py                       # the real model
    python scripts/bench_gptq.py --random-weights      # same shapes, random weights and tokens
    python scripts/bench_gptq.py --tiny                # a 2-block toy, seconds
    python scripts/bench_gptq.py --num-layers 4        # first 4 blocks only (a quick estimate)
    python scripts/bench_gptq.py --autocast bfloat16   # forward passes in bfloat16 (weights, H in float32)
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def smollm2_shaped(num_layers: int):
    """A random Llama with SmolLM2-135M's shapes (hidden 576, MLP 1536, 9 heads, 3 KV heads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=num_layers,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                      tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0)
    return LlamaForCausalLM(cfg).eval()


def load(args: argparse.Namespace):
    """Model and calibration segments as asked (falls back to random weights if no loader yet)."""
    import torch

    torch.manual_seed(0)
    if args.tiny:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
        model = LlamaForCausalLM(cfg).eval()
        return model, torch.randint(0, 256, (args.nsamples, args.seqlen)), "tiny random llama"
    if not args.random_weights:
        try:
            from calibration.models import load_model
        except ImportError:
            print("calibration.models.load_model is not available: using random weights", file=sys.stderr)
        else:
            from calibration.data import calibration_segments

            model, tokenizer = load_model(args.model, dtype="float32", device="cpu")
            if args.num_layers:
                from calibration.models import find_decoder_blocks

                del find_decoder_blocks(model)[1][args.num_layers:]
            segs = calibration_segments(tokenizer, args.calib, args.nsamples, args.seqlen, args.seed)
            return model, segs, f"{args.model}, {args.calib}"
    model = smollm2_shaped(args.num_layers or 30)
    ids = torch.randint(0, 49152, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(args.seed))
    return model, ids, "random weights with SmolLM2-135M's shapes, random tokens"


def gemm_gflops(m: int, k: int, n: int, repeat: int = 5) -> float:
    """This CPU's float32 matmul rate now, in GFLOP/s, at one calibration mini-batch's shape (best of ``repeat``)."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best / 1e9


def pass_gflop(model, tokens: int) -> tuple[float, float, tuple[int, int]]:
    """GFLOP of the linear layers' matmuls in one pass over ``tokens`` calibration tokens through
    every decoder block: (the full block, as the re-run; without the last linear, as the Hessian
    passes, which stop at its input), and the ``[out, in]`` shape of a block's largest linear.
    Attention, norms and activations are not counted."""
    from calibration.models import find_decoder_blocks
    from calibration.models.blocks import find_linear_layers, linear_weight

    full = observe = 0.0
    widest = (0, 0)
    for block in find_decoder_blocks(model)[1]:
        shapes = [tuple(linear_weight(m).shape) for m in find_linear_layers(block).values()]
        sizes = [o * i for o, i in shapes]
        full += 2 * tokens * sum(sizes) / 1e9
        observe += 2 * tokens * sum(sizes[:-1]) / 1e9
        widest = max([widest, *shapes], key=lambda shape: shape[0] * shape[1])
    return full, observe, widest


def add_load_arguments(ap: argparse.ArgumentParser, group_size: int = 64) -> None:
    """The model, calibration and GPTQ format flags :func:`load` and the GPTQ benches read."""
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tiny", action="store_true", help="a 2-block toy model (smoke test)")
    ap.add_argument("--random-weights", action="store_true", help="SmolLM2-135M shapes, random weights and tokens")
    ap.add_argument("--num-layers", type=int, default=None, help="keep only the first N decoder blocks")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=group_size, help="0 for per-channel (default %(default)s)")
    ap.add_argument("--calib", default="web-ot")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(ap)
    ap.add_argument("--act-order", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--static-groups", action="store_true")
    ap.add_argument("--true-sequential", action="store_true")
    ap.add_argument("--passes", default="two", choices=["one", "two"], help="GPTQ passes per block (default two)")
    ap.add_argument("--hessian-dtype", default="float32")
    ap.add_argument("--hessian-products", default="exact", choices=["exact", "bfloat16"],
                    help="dtype of the Hessian's X^T X matmuls (default exact)")
    ap.add_argument("--autocast", default=None, choices=["bfloat16", "float16"],
                    help="calibration forward passes under torch.autocast (default: float32)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    from ptq.kernels.allocator import keep_freed_memory

    keep_freed_memory()  # the same glibc settings as the ptq CLI, for every variant alike
    if args.tiny:
        args.nsamples, args.seqlen = min(args.nsamples, 16), min(args.seqlen, 64)
        args.group_size = min(args.group_size, 32)

    from calibration.recipes import GPTQStep, Recipe
    from calibration.runner import peak_rss_mb, quantize_model

    t0 = time.perf_counter()
    model, segments, what = load(args)
    t_load = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()
    step = GPTQStep(bits=args.bits, granularity="group" if args.group_size else "channel",
                    group_size=args.group_size or None, act_order=args.act_order, static_groups=args.static_groups,
                    true_sequential=args.true_sequential, hessian_dtype=args.hessian_dtype, passes=args.passes,
                    hessian_products=args.hessian_products)
    result = quantize_model(model, Recipe([step]), segments, batch_size=args.batch_size, progress=False,
                            autocast=args.autocast)
    s = result.steps[0]["seconds"]
    total = result.timings["quantize"]
    phases = {
        "catch block-0 inputs": result.timings["catch_inputs"],
        "forward passes feeding the Hessians": s["observe"] - s["hessian"],
        "Hessian accumulation": s["hessian"],
        "Cholesky / inversion": s["inverse"],
        "GPTQ column loop": s["column_loop"],
        "other solve (qparams, write-back)": s["solve"] - s["inverse"] - s["column_loop"],
    }
    phases["block re-run + runner"] = total - sum(phases.values())
    print(f"GPTQ {step.spec.describe()}{' act-order' if args.act_order else ''}"
          f"{' static-groups' if args.static_groups else ''}{' true-sequential' if args.true_sequential else ''}"
          f"{' one-pass' if args.passes == 'one' else ''}"
          f"{f'; forward passes under {args.autocast} autocast' if args.autocast else ''}; "
          f"{what}; {tuple(segments.shape)[0]} x {tuple(segments.shape)[1]} tokens, batch {args.batch_size}")
    print("| phase | seconds | share |\n|---|---:|---:|")
    for name, sec in phases.items():
        print(f"| {name} | {sec:.1f} | {100 * sec / total:.0f}% |")
    print(f"| **total quantization** | **{total:.1f}** | |")
    print(f"load {t_load:.1f} s; peak RSS after loading {rss_loaded:.0f} MiB, at the end {result.peak_rss_mb:.0f} MiB; "
          f"{result.steps[0]['layers']} layers, {len(result.steps[0]['fallbacks'])} RTN fallbacks, "
          f"total GPTQ loss {result.steps[0]['total_loss']:.4g}")
    tokens = tuple(segments.shape)[0] * tuple(segments.shape)[1]
    full, observe, widest = pass_gflop(model, tokens)
    if args.passes == "one":  # one whole pass per block, no Hessian pass stopping early
        observe = 0.0
    rate = gemm_gflops(args.batch_size * args.seqlen, widest[1], widest[0])
    passes = phases["forward passes feeding the Hessians"] + phases["block re-run + runner"]
    print(f"the passes' linear layers: {full + observe:.0f} GFLOP in {passes:.1f} s = "
          f"{(full + observe) / max(passes, 1e-9):.0f} GFLOP/s; this CPU's float32 matmul now: {rate:.0f} GFLOP/s, "
          f"so those matmuls alone need at least {(full + observe) / rate:.0f} s here")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"phases_s": phases, "total_s": total, "pass_gflop": full + observe, "gemm_gflops": rate,
                   "load_s": t_load, "peak_rss_mb": result.peak_rss_mb,
                   "rss_after_load_mb": rss_loaded, "what": what, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
