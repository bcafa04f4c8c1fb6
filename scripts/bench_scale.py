"""Peak memory of a streamed GPTQ run on synthetic 7B-shaped Llama checkpoints, against the checkpoint's
size, one block's size and the plan's prediction.

Builds one synthetic Llama checkpoint with a 7B model's shapes (hidden 4096, MLP 11008, 32 heads,
random weights, float32 safetensors, one shard per decoder block plus one for the embedding, final
norm and head; the vocabulary is SmolLM2's 49152 tokens, whose tokenizer is the one available
offline) of the largest depth asked, and the smaller depths as folders of links to its first shards.
For each depth, in a fresh process, it runs

    python -m scripts.cli quantize DIR --method gptq --bits 4 --stream --calib web-ot --nsamples 8 --seqlen 256

(``--method rtn``: the same without calibration, to see the streaming's own memory at any depth quickly);

and reads the child's peak RSS (``wait4``'s ``ru_maxrss``), and ``ptq plan --json`` of the same flags
for the predicted peak. Prints peak RSS against the checkpoint's float size and one block's size, the
ratio of the deepest to the shallowest peak, and the plan's error. The checkpoints and outputs are
deleted at the end (``--keep`` keeps them).

    OMP_NUM_THREADS=1 python -m scripts.bench_scale [--depths 4 8 16] [--folder /tmp/ptq-bench-scale]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HIDDEN, MLP, HEADS, VOCAB = 4096, 11008, 32, 49152
GiB, MiB = 2**30, 2**20


def llama_config(blocks: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=blocks,
                       num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=4096,
                       tie_word_embeddings=False, dtype="float32")


def block_tensors(index: int, gen) -> dict:
    """One decoder block's tensors (random weights scaled like an initialised Llama, unit norms)."""
    import torch

    shapes = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, HIDDEN),
              "self_attn.v_proj": (HIDDEN, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
              "mlp.gate_proj": (MLP, HIDDEN), "mlp.up_proj": (MLP, HIDDEN), "mlp.down_proj": (HIDDEN, MLP)}
    p = f"model.layers.{index}."
    out = {f"{p}{n}.weight": torch.randn(s, generator=gen) * s[1] ** -0.5 for n, s in shapes.items()}
    out[f"{p}input_layernorm.weight"] = torch.ones(HIDDEN)
    out[f"{p}post_attention_layernorm.weight"] = torch.ones(HIDDEN)
    return out


def write_index(folder: Path, weight_map: dict[str, str], total: int) -> None:
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))


def build(root: Path, depths: list[int]) -> dict[int, Path]:
    """The synthetic checkpoint of ``max(depths)`` blocks, and linked folders of the smaller depths."""
    import torch
    from transformers import AutoTokenizer

    from calibration.models.loading import resolve_source
    from ptq.checkpoint.files import stream_safetensors

    deepest = max(depths)
    full = root / f"llama7b-shape-{deepest}"
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_source("smollm2-135m")))
    shards: list[tuple[str, dict[str, int]]] = []  # (file, {tensor: bytes})
    if not (full / "config.json").is_file():
        shutil.rmtree(full, ignore_errors=True)
        full.mkdir(parents=True)
        gen = torch.Generator().manual_seed(0)
        outside = {"model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=gen) * 0.02,
                   "model.norm.weight": torch.ones(HIDDEN),
                   "lm_head.weight": torch.randn(VOCAB, HIDDEN, generator=gen) * HIDDEN ** -0.5}
        stream_safetensors(full / "outside.safetensors", outside, metadata={"format": "pt"})
        del outside
        for i in range(deepest):
            t = block_tensors(i, gen)
            stream_safetensors(full / f"block-{i:05d}.safetensors", t, metadata={"format": "pt"})
            print(f"  wrote block {i + 1}/{deepest}", file=sys.stderr, flush=True)
            del t
        tokenizer.save_pretrained(full)
    from safetensors import safe_open

    def sizes(name: str) -> dict[str, int]:
        with safe_open(str(full / name), framework="pt", device="cpu") as f:
            return {k: _nbytes(f.get_slice(k)) for k in f.keys()}

    shards = [("outside.safetensors", sizes("outside.safetensors"))]
    shards += [(f"block-{i:05d}.safetensors", sizes(f"block-{i:05d}.safetensors")) for i in range(deepest)]
    folders = {}
    for depth in sorted(set(depths)):
        folder = full if depth == deepest else root / f"llama7b-shape-{depth}"
        if folder != full:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            for name, _ in shards[:depth + 1]:
                (folder / name).symlink_to(full / name)
            tokenizer.save_pretrained(folder)
        llama_config(depth).save_pretrained(folder)
        used = shards[:depth + 1]
        write_index(folder, {k: name for name, s in used for k in s}, sum(sum(s.values()) for _, s in used))
        folders[depth] = folder
    return folders


def _nbytes(sl) -> int:
    import math

    item = {"F32": 4, "F16": 2, "BF16": 2}[sl.get_dtype()]
    return math.prod(sl.get_shape()) * item


def flags(folder: Path, args: argparse.Namespace) -> list[str]:
    return [str(folder), "--method", args.method, "--bits", "4", "--stream", "--calib", args.calib,
            "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--batch-size", str(args.nsamples)]


def run_child(cmd: list[str], log: Path) -> tuple[int, float]:
    """``(peak RSS bytes, seconds)`` of a child process (``wait4``: this child's own ``ru_maxrss``)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{log.read_text()[-3000:]}")
    return usage.ru_maxrss * 1024, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--folder", default="/tmp/ptq-bench-scale", help="where the checkpoints go (about 3.3 GB per block)")
    ap.add_argument("--method", default="gptq", choices=["gptq", "rtn"],
                    help="gptq (default); rtn: no calibration, minutes instead of hours (the streaming alone)")
    ap.add_argument("--calib", default="web-ot")
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--keep", action="store_true", help="keep the checkpoints and outputs")
    args = ap.parse_args()
    root = Path(args.folder)
    root.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    print(f"bench_scale: {args.method} W4 (per channel) streamed; calibration {args.calib} {args.nsamples} x {args.seqlen}; "
          f"Llama hidden {HIDDEN}, MLP {MLP}, {HEADS} heads, vocab {VOCAB}, float32 safetensors; "
          f"OMP_NUM_THREADS={threads}", flush=True)
    try:
        t0 = time.perf_counter()
        folders = build(root, args.depths)
        print(f"checkpoints built in {time.perf_counter() - t0:.0f} s", flush=True)
        rows = []
        for depth, folder in sorted(folders.items()):
            out = root / f"out-{depth}"
            shutil.rmtree(out, ignore_errors=True)
            plan = subprocess.run([sys.executable, "-m", "scripts.cli", "plan", *flags(folder, args), "--json"],
                                  capture_output=True, text=True)
            if plan.returncode != 0:
                raise SystemExit(f"ptq plan failed:\n{plan.stderr}")
            predicted = json.loads(plan.stdout)["host_peak_mib"] * MiB
            peak, seconds = run_child([sys.executable, "-m", "scripts.cli", "quantize", *flags(folder, args),
                                       "--output", str(out), "--quiet"], root / f"log-{depth}.txt")
            index = json.loads((folder / "model.safetensors.index.json").read_text())
            ckpt = index["metadata"]["total_size"]
            block = sum(os.path.getsize(folder / f"block-{i:05d}.safetensors") for i in range(depth)) / depth
            rows.append((depth, ckpt, block, peak, predicted, seconds))
            print(f"  {depth} blocks: peak {peak / MiB:,.0f} MiB in {seconds:.0f} s", flush=True)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
        print("| blocks | checkpoint (GiB) | one block (MiB) | peak RSS (MiB) | peak / checkpoint | peak / block "
              "| ptq plan (MiB) | plan error | seconds |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for depth, ckpt, block, peak, predicted, seconds in rows:
            print(f"| {depth} | {ckpt / GiB:.2f} | {block / MiB:,.0f} | {peak / MiB:,.0f} | {100 * peak / ckpt:.1f} % "
                  f"| {peak / block:.2f} | {predicted / MiB:,.0f} | {100 * (predicted - peak) / peak:+.1f} % "
                  f"| {seconds:.0f} |")
        if len(rows) > 1:
            print(f"peak RSS {rows[-1][0]} / {rows[0][0]} blocks: {rows[-1][3] / rows[0][3]:.3f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
