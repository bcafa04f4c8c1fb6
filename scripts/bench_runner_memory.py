"""Peak memory of the block-by-block runner against model depth.

Runs the runner (activation statistics of every linear input, then RTN W4) on tiny random
Llama models of 4, 8 and 16 blocks of SmolLM2's width, each in a fresh process, and prints
the peak RSS, the model's own weight bytes, and their difference (the runner's working
set: calibration activations, one block's statistics), which must not grow with depth.

    python scripts/bench_runner_memory.py [--depths 4 8 16] [--nsamples 128] [--seqlen 512]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys


def child(depth: int, nsamples: int, seqlen: int) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from calibration.recipes import Recipe
    from calibration.runner import peak_rss_mb, quantize_model

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=8192, hidden_size=576, intermediate_size=1536, num_hidden_layers=depth,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=seqlen)
    model = LlamaForCausalLM(cfg).eval()
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    segments = torch.randint(0, cfg.vocab_size, (nsamples, seqlen))
    base = peak_rss_mb()
    recipe = Recipe.from_list([{"step": "activation-stats"}, {"step": "rtn", "bits": 4}])
    res = quantize_model(model, recipe, segments, batch_size=8, progress=False)
    return {"depth": depth, "weights_mb": weights_mb, "rss_before_mb": base, "peak_rss_mb": peak_rss_mb(),
            "seconds": res.timings["quantize"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.nsamples, args.seqlen)))
        return
    print(f"runner peak memory; {args.nsamples} x {args.seqlen} calibration tokens, hidden 576, MLP 1536")
    print("| blocks | weights (MiB) | RSS before (MiB) | peak RSS (MiB) | peak - weights (MiB) | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    for depth in args.depths:
        out = subprocess.run([sys.executable, __file__, "--child", str(depth), "--nsamples", str(args.nsamples),
                              "--seqlen", str(args.seqlen)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {depth} | {r['weights_mb']:.0f} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_rss_mb'] - r['weights_mb']:.0f} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
