"""Run a grid: for each model x method x seed, load, quantize once, evaluate every dataset.

Each finished cell is appended to the results store at once; cells already in the store
are skipped (a model is not even loaded when all its cells of a method are done), so an
interrupted grid resumes where it stopped. A record keeps the perplexity (± its SE over windows,
and each window's NLL for paired comparisons), whether a BOS led each window, the KL / top-1
agreement / perplexity ratio against the float model, footprint, timings and the recipe's step
summaries (``steps``, as in ``ptq.json``: e.g. SmoothQuant's chosen alphas).

The float model's top-k logits are computed once per model and evaluation corpus (before the
first group of that model quantizes anything, from the model it has just loaded when that is
float32; by the float row's own evaluation pass when that row comes first) and cached beside the
results store in ``reference-logits/``; every row reads them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from evaluations.results_store import ResultsStore, cell_key
from scripts.grid.config import DatasetEntry, GridConfig, MethodEntry, ModelEntry


@dataclass(frozen=True)
class CellPlan:
    """One cell of the grid and its store key."""

    model: ModelEntry
    method: MethodEntry
    dataset: DatasetEntry
    seed: int | None  # None: the method uses no calibration data (one run, no repeats)
    key: str


def max_windows(config: GridConfig, dataset: DatasetEntry) -> int | None:
    return dataset.max_windows if dataset.max_windows is not None else config.eval.max_windows


def plan_cells(config: GridConfig) -> list[CellPlan]:
    """Every cell in run order (model, method, seed, dataset), with its key."""
    cells = []
    for model in config.models:
        for method in config.methods:
            calibrated = method.needs_calibration()
            recipe = method.resolved_steps()
            for seed in (config.calibration.seeds if calibrated else (None,)):
                for ds in config.datasets:
                    parts = {
                        "model": model.id, "recipe": recipe, "dtype": method.dtype, "dataset": ds.source,
                        "calibration": config.calibration.settings() if calibrated else None, "seed": seed,
                        "eval": {"seqlen": config.eval.seqlen, "max_windows": max_windows(config, ds),
                                 "native_dtype": config.eval.native_dtype and method.dtype != "float32",
                                 **config.eval.key_parts()},
                    }
                    if method.autocast and calibrated:  # only then (earlier cells keep their keys)
                        parts["autocast"] = method.autocast
                    cells.append(CellPlan(model, method, ds, seed, cell_key(parts)))
    return cells


def run_grid(config: GridConfig, store: ResultsStore, log: Callable[[str], None] | None = None,
             progress: bool = False, on_cell: Callable[[dict[str, Any]], None] | None = None) -> dict[str, int]:
    """Compute every cell of ``config`` missing from ``store``; returns ``{"computed": n, "skipped": m}``.

    ``on_cell(record)`` is called after each record was appended (progress reports, tests).
    """
    from scripts.grid.hub_check import check_hub

    log = log or (lambda msg: None)
    cells = plan_cells(config)
    done = store.done_keys()
    todo = [c for c in cells if c.key not in done]
    counts = {"computed": 0, "skipped": len(cells) - len(todo)}
    if not todo:
        return counts
    check_hub(config)
    groups: dict[tuple[str, str, int | None], list[CellPlan]] = {}
    for c in todo:
        groups.setdefault((c.model.label, c.method.label, c.seed), []).append(c)
    segment_cache: dict[tuple[str, int], Any] = {}
    ref_dir = store.path.parent / "reference-logits"
    for (model_label, method_label, seed), group in groups.items():
        for record in _run_group(config, group, segment_cache, log, progress, ref_dir):
            store.append(record)
            counts["computed"] += 1
            if on_cell is not None:
                on_cell(record)
    return counts


def _eval_jobs(config: GridConfig, group: list[CellPlan], tokenizer: Any) -> list[tuple]:
    """``(source, split, ids, WindowPlan)`` of each dataset of the group (one window definition)."""
    from calibration.data import tokenize_corpus
    from evaluations.perplexity import resolve_bos
    from evaluations.windows import plan_windows

    bos = resolve_bos(tokenizer, config.eval.bos)
    jobs = []
    for cell in group:
        ids = tokenize_corpus(tokenizer, cell.dataset.source, "test")
        jobs.append((cell.dataset.source, "test", ids, plan_windows(
            ids.numel(), config.eval.seqlen, None, max_windows(config, cell.dataset), config.eval.window_seed, bos)))
    return jobs


def _run_group(config: GridConfig, group: list[CellPlan], segment_cache: dict[tuple[str, int], Any],
               log: Callable[[str], None], progress: bool, ref_dir: Any = None):
    """Load + quantize one (model, method, seed), then yield one record per dataset."""
    import torch

    from calibration.data import calibration_segments
    from calibration.data.segments import BOS_CHOICES, calibration_bos
    from calibration.models import load_model
    from calibration.recipes import Recipe
    from calibration.runner import quantize_model
    from evaluations import footprint
    from evaluations.reference import DEFAULT_TOPK, evaluate
    from scripts.versions import versions

    first = group[0]
    model_e, method, seed = first.model, first.method, first.seed
    tag = f"[{model_e.label} | {method.label}" + (f" | seed {seed}]" if seed is not None else "]")
    log(f"{tag} loading {model_e.id}")
    model, tokenizer = load_model(model_e.id, dtype=method.dtype, device=config.device)
    jobs = _eval_jobs(config, group, tokenizer)
    refs: list[Any] = [None] * len(jobs)
    topk = DEFAULT_TOPK if config.eval.kl_topk is None else config.eval.kl_topk
    float_row = method.dtype == "float32" and not method.steps  # its evaluation pass makes the reference
    if topk and not float_row:
        from evaluations.reference_cache import float_references

        as_loaded = (lambda *_: model) if method.dtype == "float32" else None  # still the float model
        refs = float_references(model_e.id, jobs, topk, ref_dir, config.device, progress,
                                load=as_loaded)
    quantized, t_quant, peak, steps, calib_bos = {}, 0.0, None, [], None
    if method.steps:
        recipe = Recipe.from_list([dict(s) for s in method.steps])
        segments = None
        if recipe.needs_calibration_data:
            cal = config.calibration
            if (model_e.id, seed) not in segment_cache:
                segment_cache.clear()  # one model's segments at a time
                segment_cache[(model_e.id, seed)] = calibration_segments(tokenizer, cal.source, cal.nsamples,
                                                                         cal.seqlen, seed, bos=BOS_CHOICES[cal.bos])
            segments = segment_cache[(model_e.id, seed)]
            calib_bos = calibration_bos(tokenizer, BOS_CHOICES[cal.bos])
        log(f"{tag} quantizing ({recipe.describe()})")
        res = quantize_model(model, recipe, segments, batch_size=config.calibration.batch_size, progress=progress,
                             autocast=method.autocast)
        t_quant, peak, steps = res.timings.get("quantize", 0.0), res.peak_rss_mb, res.steps
        quantized = {name: rec.spec for name, rec in res.records.items() if rec.spec is not None}
    fp = footprint(model, quantized=quantized or None)
    native = config.eval.native_dtype and method.dtype != "float32"
    if method.dtype != "float32" and not native and next(model.parameters()).device.type == "cpu":
        model = model.to(torch.float32)  # weights rounded to the dtype, float32 compute
    vers = versions()
    for cell, job, ref in zip(group, jobs, refs):
        log(f"{tag} evaluating on {cell.dataset.label}")
        if float_row and topk:
            from evaluations.reference_cache import evaluate_float

            r, kl = evaluate_float(model_e.id, model, job, topk, ref_dir, progress)
        else:
            r, kl = evaluate(model, job[2], job[3], ref, progress=progress)
        yield {
            "key": cell.key, "grid": config.name,
            "model": model_e.label, "model_id": model_e.id,
            "method": method.label, "line": method.line, "dtype": method.dtype, "compute_dtype":
                method.dtype if native else "float32",
            "recipe": method.resolved_steps(),
            "dataset": cell.dataset.label, "dataset_source": cell.dataset.source,
            "seed": seed, "calibration": config.calibration.settings() if seed is not None else None,
            "calibration_bos": calib_bos, "in_domain": config.in_domain(cell.dataset) if seed is not None else None,
            "ppl": r.ppl, "ppl_se": r.ppl_se, "bos": r.bos, "perplexity": r.to_dict(), "tokens": r.tokens,
            "seconds": r.seconds, "kl": None if kl is None else kl.to_dict(),
            "footprint": fp.to_dict(), "bits_per_weight": fp.bits_per_weight,
            "quantize_s": t_quant, "peak_rss_mb": peak, "steps": steps, "versions": vers,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    del model
