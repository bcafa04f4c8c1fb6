"""``ptq eval``: perplexity (± SE) of a model or quantized output folder on evaluation corpora,
KL / top-1 agreement / perplexity ratio against the float model, and lm-eval tasks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.commands.common import add_model_arguments, add_quiet, info
from ptq.jsonable import write_json
from ptq.errors import PTQUserError
from scripts.preflight import check_eval

HELP = "perplexity (and KL to the float model, lm-eval tasks) of a model or a ptq quantize output folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--dataset", action="append", default=None,
                   help="evaluation corpus (repeatable; default web-nt): a named source or a .txt/.jsonl/folder path")
    p.add_argument("--split", default="test", help="split of the corpus (default test)")
    p.add_argument("--seqlen", type=int, default=512, help="window length in tokens (default 512)")
    p.add_argument("--max-windows", type=int, default=None, help="evaluate at most N windows (quick runs)")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: non-overlapping windows)")
    p.add_argument("--window-seed", type=int, default=None,
                   help="evaluate a random sample of --max-windows windows drawn with this seed (default: the first "
                        "windows of the text); another seed measures the run-to-run noise")
    bos = p.add_mutually_exclusive_group()
    bos.add_argument("--bos", dest="bos", action="store_true", default=None,
                     help="feed the tokenizer's BOS token in front of every window (default: iff the tokenizer adds one)")
    bos.add_argument("--no-bos", dest="bos", action="store_false",
                     help="raw windows with no BOS (the GPTQ papers' protocol)")
    k = p.add_argument_group("against the float model")
    k.add_argument("--reference", default=None,
                   help="float model to compare with (KL, same top token, perplexity ratio); default: the model a "
                        "quantized folder was made from (its ptq.json), none for a float model; 'none' turns it off")
    k.add_argument("--kl-topk", type=int, default=None,
                   help="keep the reference's top-k log-probs per position (cached on disk; default 256, evaluations.reference.DEFAULT_TOPK); "
                        "0: exact full-vocabulary KL with the reference model in memory, no cache")
    k.add_argument("--reference-cache", default=None,
                   help="folder of cached reference logits (default $PTQ_CACHE_DIR/reference-logits or "
                        "~/.cache/ptq/reference-logits)")
    t = p.add_argument_group("lm-eval tasks (pip install 'ptq[lm-eval]')")
    t.add_argument("--tasks", default=None,
                   help="comma-separated lm-eval tasks run on the model in memory, e.g. ptq_bible_lastword (offline) "
                        "or lambada_openai,hellaswag (need the hub)")
    t.add_argument("--limit", type=float, default=None, help="at most N documents per task (a value below 1: a share)")
    t.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples per task (default: the task's)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--force", action="store_true", help="run even when the plan says this machine cannot hold it")
    add_quiet(p)


def check_arguments(args: argparse.Namespace) -> None:
    for flag, value, low in (("--max-windows", args.max_windows, 1), ("--seqlen", args.seqlen, 2),
                             ("--kl-topk", args.kl_topk, 0)):
        if value is not None and value < low:
            raise PTQUserError(f"{flag} must be at least {low}, got {value}")
    if args.window_seed is not None and args.stride is not None and args.stride != args.seqlen:
        raise PTQUserError("--window-seed samples non-overlapping windows; drop --stride")
    if args.limit is not None and args.limit <= 0:
        raise PTQUserError(f"--limit must be positive, got {args.limit}")
    from calibration import distributed

    if distributed.active() and args.tasks:
        raise PTQUserError("--tasks (lm-eval) runs in one process; run it without torchrun")


def reference_id(args: argparse.Namespace, quantized: bool) -> str | None:
    """``--reference``, else the source model recorded in a quantized folder's ptq.json, else None."""
    if args.reference is not None:
        return None if args.reference.lower() == "none" else args.reference
    if not quantized:
        return None
    from ptq.checkpoint.files import read_json

    report = Path(args.model) / "ptq.json"
    source = read_json(report).get("model") if report.is_file() else None
    return str(source) if source else None


def _pm(value: float, se: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")


def print_result(ds: str, r, kl, ref: str | None) -> None:
    print(f"{ds}: perplexity {_pm(r.ppl, r.ppl_se)} over {r.tokens} tokens ({r.windows} windows of {r.seqlen}, "
          f"BOS {'yes' if r.bos else 'no'}, {r.tokens_per_s:.0f} tokens/s)")
    if kl is None:
        return
    how = "exact KL" if kl.topk is None else f"top-{kl.topk} KL, {100 * kl.ref_rest_mass:.2f} % of the float mass outside"
    print(f"  vs {ref}: KL {_pm(kl.kl_mean, kl.kl_se, 5)} (median {kl.kl_median:.5f}, p99 {kl.kl_p99:.4f}, "
          f"max {kl.kl_max:.3f}), same top token {_pm(100 * kl.top1, None if kl.top1_se is None else 100 * kl.top1_se, 2)} %, "
          f"ppl ratio {_pm(kl.ppl_ratio, kl.ppl_ratio_se, 4)} (float {kl.ref_ppl:.3f}, "
          f"Δ {kl.delta_ppl:+.3f}{'' if kl.delta_ppl_se is None else f' ± {kl.delta_ppl_se:.3f}'} paired) [{how}]")


def _float_references(args: argparse.Namespace, ref_id: str, jobs: list, float_references) -> list:
    """The cached float logits; under ``torchrun`` rank 0 computes (and caches) what is missing while the
    other ranks wait, then they read the cache (one writer per cache file)."""
    from calibration import distributed

    if distributed.is_main():
        refs = float_references(ref_id, jobs, args.kl_topk, args.reference_cache, args.device, not args.quiet)
    distributed.barrier("waiting for rank 0's float reference logits")
    if not distributed.is_main():
        refs = float_references(ref_id, jobs, args.kl_topk, args.reference_cache, args.device, False)
    return refs


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    check_eval(args.model, args.dtype, args.device, args.seqlen, args.max_windows, args.force)  # before any loading
    from evaluations.reference import DEFAULT_TOPK

    if args.kl_topk is None:
        args.kl_topk = DEFAULT_TOPK
    from calibration import distributed
    from calibration.data import tokenize_corpus
    from calibration.models import load_model
    from evaluations import footprint
    from evaluations.perplexity import resolve_bos
    from evaluations.reference import evaluate
    from evaluations.reference_cache import float_references
    from evaluations.windows import plan_windows
    from ptq.checkpoint import is_quantized_checkpoint, load_quantized

    datasets = args.dataset or ["web-nt"]
    tasks = [t.strip() for t in (args.tasks or "").split(",") if t.strip()]
    quantized = is_quantized_checkpoint(args.model)
    if quantized:  # a ptq quantize output (packed ptq or GPTQ format)
        model, tokenizer = load_quantized(args.model, dtype=args.dtype, device=args.device)
    else:
        model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    ref_id = reference_id(args, quantized)
    bos = resolve_bos(tokenizer, args.bos)
    jobs = []
    for ds in datasets:
        ids = tokenize_corpus(tokenizer, ds, args.split)
        jobs.append((ds, args.split, ids, plan_windows(ids.numel(), args.seqlen, args.stride, args.max_windows,
                                                       args.window_seed, bos)))
    refs: list = [None] * len(jobs)
    if ref_id is not None and args.kl_topk > 0:
        info(args, f"float reference {ref_id}: top-{args.kl_topk} logits (cached)")
        refs = _float_references(args, ref_id, jobs, float_references)
    elif ref_id is not None:
        info(args, f"float reference {ref_id} in memory: exact KL")
        ref_model = load_model(ref_id, dtype="float32", device=args.device)[0]
        refs = [ref_model] * len(jobs)
    results = {}
    for (ds, _, ids, plan), ref in zip(jobs, refs):
        info(args, f"evaluating {args.model} on {ds} ({args.split}), windows of {args.seqlen}")
        r, kl = evaluate(model, ids, plan, ref, progress=not args.quiet)
        results[ds] = {**r.to_dict(), "kl": None if kl is None else kl.to_dict()}
        print_result(ds, r, kl, ref_id)
    task_results = None
    if tasks:
        from evaluations.lm_eval_adapter import run_tasks

        info(args, f"lm-eval tasks: {', '.join(tasks)}")
        limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
        task_results = run_tasks(model, tokenizer, tasks, limit=limit, num_fewshot=args.num_fewshot,
                                 bos=None if args.bos is None else bool(args.bos))
        for task, metrics in task_results.items():
            shown = ", ".join(f"{m} {v:.4f}" + (f" ± {metrics[m + '_stderr']:.4f}" if m + "_stderr" in metrics else "")
                              for m, v in metrics.items() if not m.endswith("_stderr") and m != "sample_len")
            print(f"{task}: {shown} ({int(metrics.get('sample_len', 0))} documents)")
    fp = footprint(model)
    print(f"weights: {fp.human()} ({fp.bits_per_weight:.2f} bits per weight)")
    if args.json and distributed.is_main():
        write_json(args.json, {"model": args.model, "dtype": args.dtype, "reference": ref_id, "bos": bos is not None,
                               "perplexity": results, "tasks": task_results, "footprint": fp.to_dict()})
    sys.stdout.flush()
    return 0
