"""One process against ``torchrun --nproc-per-node N``: the same quantized model, the same perplexity, and the times.

    python -m scripts.bench_dist --model smollm2-135m --method "--method gptq --bits 4 --group-size 64 --act-order" \\
        --nsamples 32 --seqlen 512 --datasets web-nt pydocs --max-windows 16 --folder /tmp/bench-dist

Runs, one after the other, each with ``OMP_NUM_THREADS=1`` per process: ``ptq quantize`` in one process and
under ``torchrun`` with ``--nproc`` processes; ``ptq eval`` of both checkpoints in one process; ``ptq eval``
of the one-process checkpoint under ``torchrun``. Prints the share of identical weight codes, the
perplexities, the relative difference of the two evaluations of one checkpoint, and wall times (with the
machine's load average, which the times depend on).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch


def _run(cmd: list[str], nproc: int) -> float:
    """Wall seconds of ``python -m scripts.cli CMD`` in one process (``nproc == 1``) or under torchrun."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m",
                "scripts.cli"] if nproc > 1 else [sys.executable, "-m", "scripts.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([*launcher, *cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def code_agreement(a: Path, b: Path) -> tuple[int, int, float, dict[int, float]]:
    """``(identical codes, codes, max relative scale difference, share identical per decoder block)`` of two
    packed checkpoints."""
    from safetensors.torch import load_file

    from ptq.checkpoint.files import read_json
    from ptq.modules.quant_linear import unpack_rows

    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    bits = read_json(a / "ptq.json")["recipe"][0]["bits"]
    same = total = 0
    worst = 0.0
    blocks: dict[int, list[int]] = {}
    for key, qa in ta.items():
        if key.endswith(".qweight"):
            n = qa.shape[1] * 32 // bits
            ca, cb = unpack_rows(qa, bits, n), unpack_rows(tb[key], bits, n)
            equal = int((ca == cb).sum())
            same += equal
            total += ca.numel()
            index = int(key.split(".layers.")[1].split(".")[0]) if ".layers." in key else -1
            counts = blocks.setdefault(index, [0, 0])
            counts[0] += equal
            counts[1] += ca.numel()
        elif key.endswith(".scales"):
            sa, sb = ta[key].float(), tb[key].float()
            worst = max(worst, float(((sa - sb).abs() / sa.abs().clamp(min=1e-12)).max()))
    return same, total, worst, {i: s / t for i, (s, t) in sorted(blocks.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--method", default="--method gptq --bits 4 --group-size 64 --act-order",
                   help="the quantize flags of the method (one string)")
    p.add_argument("--calib", default="web-ot")
    p.add_argument("--nsamples", type=int, default=32)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--datasets", nargs="+", default=["web-nt", "pydocs"])
    p.add_argument("--max-windows", type=int, default=16)
    p.add_argument("--eval-seqlen", type=int, default=512)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--folder", type=Path, required=True)
    args = p.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    one, many = args.folder / "one", args.folder / f"nproc{args.nproc}"
    quant = [args.model, *shlex.split(args.method), "--calib", args.calib, "--nsamples", str(args.nsamples),
             "--seqlen", str(args.seqlen), "--quiet", "--overwrite"]
    ev = ["--max-windows", str(args.max_windows), "--seqlen", str(args.eval_seqlen), "--reference", "none", "--quiet",
          *[x for d in args.datasets for x in ("--dataset", d)]]
    load = [os.getloadavg()[0]]
    times = {"quantize 1": _run(["quantize", *quant, "--no-resume", "--output", str(one)], 1)}
    load.append(os.getloadavg()[0])
    times[f"quantize {args.nproc}"] = _run(["quantize", *quant, "--output", str(many)], args.nproc)
    load.append(os.getloadavg()[0])
    results = {}
    for name, folder, nproc in (("one", one, 1), ("many", many, 1), ("one@n", one, args.nproc)):
        out = args.folder / f"eval-{name}.json"
        times[f"eval {name} ({nproc} proc)"] = _run(["eval", str(folder), *ev, "--json", str(out)], nproc)
        results[name] = json.loads(out.read_text())["perplexity"]
        load.append(os.getloadavg()[0])
    same, total, worst, per_block = code_agreement(one, many)
    print(f"# {args.model} {args.method}, calibration {args.calib} {args.nsamples} x {args.seqlen}; "
          f"{args.nproc} processes (gloo) vs 1; OMP_NUM_THREADS=1 per process; torch {torch.__version__}")
    print(f"identical codes: {same} / {total} = {100 * same / total:.4f} %; max relative scale difference {worst:.2e}")
    print("identical codes per block: " + ", ".join(f"{i}: {100 * v:.2f} %" for i, v in per_block.items()))
    print("| dataset | ppl 1 process | ppl torchrun | rel. diff | eval 1 proc vs torchrun (same ckpt) rel. diff |")
    print("|---|---|---|---|---|")
    for ds in args.datasets:
        a, b, c = results["one"][ds]["ppl"], results["many"][ds]["ppl"], results["one@n"][ds]["ppl"]
        print(f"| {ds} ({results['one'][ds]['windows']} x {results['one'][ds]['seqlen']}) | {a:.4f} | {b:.4f} | "
              f"{(b - a) / a:+.2e} | {(c - a) / a:+.2e} |")
    print("| step | wall s |\n|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} |")
    print(f"load average (1 min) before / between runs: {', '.join(f'{x:.1f}' for x in load)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
