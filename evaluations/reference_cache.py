"""An on-disk cache of float reference logits (:class:`evaluations.reference.ReferenceLogits`).

One safetensors file per (model fingerprint, corpus, split, token stream, windows, BOS, k):
the key is a SHA-256 of those, so a grid computes the float logits once per model and corpus
and every quantized row reads them (as llama.cpp's ``--kl-divergence-base`` file, but top-k).
The token stream is part of the key through a hash of its ids (a changed tokenizer or text is
another entry). A model's fingerprint is its id, plus size and mtime of its weight and
config files when it is a local path (a rewritten local model is another entry); a hub id is
trusted as it is. Files are written to a temporary name and renamed.

Default folder: ``$PTQ_CACHE_DIR/reference-logits``, else ``~/.cache/ptq/reference-logits``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from evaluations.reference import ReferenceLogits
from evaluations.windows import WindowPlan

FORMAT = 1
Job = tuple[str, str, torch.Tensor, WindowPlan]  # (corpus source, split, token stream, windows)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".json")


def default_cache_dir() -> Path:
    base = os.environ.get("PTQ_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ptq") / "reference-logits"


def model_fingerprint(model_id: str) -> str:
    """``model_id``, plus name / size / mtime of its weight and config files if it is a local path."""
    path = Path(model_id)
    if not path.exists():
        return model_id
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    stats = [(str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, int(p.stat().st_mtime))
             for p in files]
    return f"{path.resolve()}|{json.dumps(stats)}"


def tokens_digest(ids: torch.Tensor) -> str:
    return hashlib.sha256(ids.reshape(-1).to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def cache_key(model_id: str, dtype: str, source: str, split: str, ids: torch.Tensor, plan: WindowPlan, topk: int) -> str:
    parts = {"format": FORMAT, "model": model_fingerprint(model_id), "dtype": dtype, "source": str(source),
             "split": split, "tokens": tokens_digest(ids), "plan": plan.describe(), "topk": topk}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def save_reference(ref: ReferenceLogits, path: Path, meta: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"plan": json.dumps(ref.plan), "window_nll": json.dumps(ref.window_nll),
              "meta": json.dumps(meta or {}, default=str), "format": str(FORMAT)}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({"logp": ref.logp.contiguous(), "ids": ref.ids.contiguous(), "log_rest": ref.log_rest.contiguous()},
              str(tmp), metadata=header)
    tmp.replace(path)


def load_reference(path: Path) -> ReferenceLogits:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {name: f.get_tensor(name) for name in ("logp", "ids", "log_rest")}
    return ReferenceLogits(tensors["logp"], tensors["ids"], tensors["log_rest"], json.loads(header["window_nll"]),
                           json.loads(header["plan"]))


def cached_reference(key: str, compute: Callable[[], ReferenceLogits], cache_dir: str | Path | None = None,
                     meta: dict[str, Any] | None = None) -> tuple[ReferenceLogits, bool]:
    """The reference stored under ``key``, else ``compute()`` it and store it; ``(ref, was_cached)``.

    An unreadable cache file (interrupted writer of an older format) is recomputed.
    """
    ref = lookup_reference(key, cache_dir)
    if ref is not None:
        return ref, True
    ref = compute()
    save_reference(ref, _path(key, cache_dir), meta)
    return ref, False


def _path(key: str, cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"{key}.safetensors"


def lookup_reference(key: str, cache_dir: str | Path | None = None) -> ReferenceLogits | None:
    """The reference stored under ``key``; ``None`` when there is none, or it is unreadable (an
    interrupted writer of an older format: recomputed, never trusted)."""
    path = _path(key, cache_dir)
    if path.is_file():
        try:
            return load_reference(path)
        except Exception:  # noqa: BLE001
            pass
    return None


def has_reference(key: str, cache_dir: str | Path | None = None) -> bool:
    return _path(key, cache_dir).is_file()


def job_key(model_id: str, job: Job, topk: int) -> str:
    """The cache key of the float model's reference for ``job``."""
    source, split, ids, plan = job
    return cache_key(model_id, "float32", source, split, ids, plan, topk)


def evaluate_float(model_id: str, model: Any, job: Job, topk: int, cache_dir: str | Path | None = None,
                   progress: bool = False) -> tuple[Any, Any]:
    """``(PerplexityResult, KLResult)`` of the float32 ``model`` (loaded from ``model_id``) on ``job``:
    against its cached reference when there is one, else from one pass that also computes and caches
    it (:func:`evaluations.reference.evaluate_reference`; the same numbers, one pass instead of two)."""
    from evaluations.reference import evaluate, evaluate_reference

    source, split, ids, plan = job
    key = job_key(model_id, job, topk)
    ref = lookup_reference(key, cache_dir)
    if ref is not None:
        return evaluate(model, ids, plan, ref, progress=progress)
    r, kl, ref = evaluate_reference(model, ids, plan, topk, progress=progress)
    save_reference(ref, _path(key, cache_dir), meta={"model": model_id, "source": source, "split": split})
    return r, kl




def float_references(model_id: str, jobs: list[Job], topk: int, cache_dir: str | Path | None = None,
                     device: str = "cpu", progress: bool = False,
                     load: Callable[[str, str], Any] | None = None) -> list[ReferenceLogits]:
    """The float model's cached top-k logits for each job, computing the missing ones.

    The float model (float32) is loaded only if some job is not cached, once, and freed before
    returning. ``load(model_id, device) -> model`` defaults to :func:`calibration.models.load_model`.
    """
    from evaluations.reference import compute_reference

    holder: dict[str, Any] = {}

    def model() -> Any:
        if "model" not in holder:
            if load is not None:
                holder["model"] = load(model_id, device)
            else:
                from calibration.models import load_model

                holder["model"] = load_model(model_id, dtype="float32", device=device)[0]
        return holder["model"]

    out = []
    for source, split, ids, plan in jobs:
        key = job_key(model_id, (source, split, ids, plan), topk)
        ref, _ = cached_reference(key, lambda: compute_reference(model(), ids, plan, topk, progress=progress),
                                  cache_dir, meta={"model": model_id, "source": source, "split": split})
        out.append(ref)
    holder.clear()
    return out
