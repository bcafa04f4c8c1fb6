"""Checkpoint sizes on disk and peak memory of ``ptq eval`` on them, side by side in one run.

Writes SmolLM2-135M as fp32 and fp16 (``save_pretrained``) and as packed ptq checkpoints
quantized with RTN (W8 per-channel, W4 g64, W3 g64; weight-only, so no calibration), then
for each prints the size on disk, the quantized layers' bytes against the theoretical
``bits x params + scale / zero overhead`` (:func:`evaluations.packed_weight_bytes`), and the
peak RSS of ``ptq eval DIR`` (``--max-windows``, in a fresh process each).

    python scripts/bench_checkpoint.py [--model smollm2-135m] [--max-windows 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = [("fp32", None, "float32"), ("fp16", None, "float16"),
        ("W8 per-channel", {"step": "rtn", "bits": 8}, None),
        ("W4 g64", {"step": "rtn", "bits": 4, "granularity": "group", "group_size": 64}, None),
        ("W3 g64", {"step": "rtn", "bits": 3, "granularity": "group", "group_size": 64}, None)]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.safetensors"))


def peak_rss_of(cmd: list[str]) -> float:
    """Peak RSS (MiB) of a child process: ``ru_maxrss`` of a fresh ``RUSAGE_CHILDREN`` reader."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--max-windows", type=int, default=2)
    p.add_argument("--keep", default=None, help="write the checkpoints here (default: a temporary folder)")
    args = p.parse_args()

    import torch

    from calibration.models import load_model
    from calibration.recipes import Recipe
    from calibration.runner import quantize_model
    from evaluations import packed_weight_bytes
    from ptq.checkpoint import save_quantized

    root = Path(args.keep or tempfile.mkdtemp(prefix="ptq-bench-ckpt-"))
    model, tok = load_model(args.model)
    print(f"{args.model}; ptq eval on web-nt, {args.max_windows} windows of 512; resource.ru_maxrss of each child")
    print("| checkpoint | safetensors on disk | quantized layers: stored / theoretical | ptq eval peak RSS |")
    print("|---|---:|---:|---:|")
    for label, step, dtype in ROWS:
        out = root / label.replace(" ", "-")
        ratio = "-"
        if step is None:
            m = copy.deepcopy(model).to(getattr(torch, dtype))
            m.save_pretrained(out)
            tok.save_pretrained(out)
        else:
            m = copy.deepcopy(model)
            res = quantize_model(m, Recipe.from_list([step]), None, progress=False)
            save_quantized(m, out, res.records, tokenizer=tok, overwrite=True)
            from safetensors import safe_open

            stored = 0
            with safe_open(str(out / "model.safetensors"), "pt") as f:
                for key in f.keys():
                    if key.rsplit(".", 1)[0] in res.records:
                        t = f.get_tensor(key)
                        stored += t.numel() * t.element_size()
            theory = 0
            for name, rec in res.records.items():
                W = m.get_submodule(name).weight
                theory += packed_weight_bytes(W.shape[0], W.shape[1], rec.spec) + (
                    0 if m.get_submodule(name).bias is None else m.get_submodule(name).bias.numel() * 4)
            ratio = f"{stored / 2**20:.1f} / {theory / 2**20:.1f} MiB ({stored / theory:.3f})"
        del m
        rss = peak_rss_of(["ptq", "eval", str(out), "--max-windows", str(args.max_windows), "--quiet"])
        print(f"| {label} | {folder_bytes(out) / 2**20:.1f} MiB | {ratio} | {rss:.0f} MiB |", flush=True)
    print(f"checkpoints in {root}")


if __name__ == "__main__":
    main()
