"""Downstream tasks through EleutherAI's lm-evaluation-harness, on a model in memory.

:func:`run_tasks` wraps the (quantized) model as ``lm_eval.models.huggingface.HFLM(pretrained=model)``
and calls ``lm_eval.simple_evaluate``; the quantized modules run as they are, nothing is
re-loaded or de-quantized. lm-eval is an optional dependency (``pip install 'ptq[lm-eval]'``).

Besides lm-eval's own tasks (``lambada_openai``, ``hellaswag``, ...; their datasets come from
the Hugging Face hub), ptq ships offline tasks in ``evaluations/lm_eval_tasks`` (added with
``TaskManager(include_path=...)``): ``ptq_bible_lastword``, LAMBADA-style last-word prediction
on held-out World English Bible verses (acc and perplexity of the last word).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from ptq.errors import PTQUserError

TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
OFFLINE_TASKS = ("ptq_bible_lastword",)
BOOTSTRAP_ITERS = 1000  # stderr of non-mean metrics (perplexity) by bootstrap; lm-eval's 100000 is slow on CPU


def _lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise PTQUserError("--tasks needs the lm-evaluation-harness: pip install 'ptq[lm-eval]'") from None
    return lm_eval


def run_tasks(model: nn.Module, tokenizer: Any, tasks: list[str], limit: int | float | None = None,
              batch_size: int = 1, num_fewshot: int | None = None, bos: bool | None = None) -> dict[str, dict[str, float]]:
    """``{task: {metric: value, metric_stderr: value}}`` of ``model`` on lm-eval ``tasks``.

    ``limit``: at most that many documents per task (a fraction below 1: that share).
    ``bos``: lm-eval's ``add_bos_token`` (None: lm-eval decides from the tokenizer).
    """
    lm_eval = _lm_eval()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    # indexing lm-eval's own few thousand task files takes tens of seconds: only when asked for one
    hub = any(t not in OFFLINE_TASKS for t in tasks)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=hub, verbosity="ERROR")
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise PTQUserError(f"unknown lm-eval task {unknown[0]!r}; offline tasks: {', '.join(OFFLINE_TASKS)} "
                         "(others, e.g. lambada_openai or hellaswag, need the Hugging Face hub)")
    device = next(model.parameters()).device
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device),
              add_bos_token=bos)
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), limit=limit, num_fewshot=num_fewshot,
                                      task_manager=manager, log_samples=False, bootstrap_iters=BOOTSTRAP_ITERS,
                                      verbosity="ERROR")
    except (ConnectionError, OSError) as exc:
        raise PTQUserError(f"lm-eval could not load a task's dataset ({type(exc).__name__}: {exc}); hub tasks need "
                         f"the Hugging Face hub, offline tasks: {', '.join(OFFLINE_TASKS)}") from None
    results: dict[str, dict[str, float]] = {}
    for task, metrics in (out or {}).get("results", {}).items():
        clean = {}
        for name, value in metrics.items():
            if name == "alias" or not isinstance(value, (int, float)):
                continue
            metric, _, _filter = name.partition(",")  # "acc,none" -> "acc"
            clean[metric] = float(value)
        results[task] = clean
    return results
