"""Checks a command makes before it loads any weights: the model's positions, options the method
ignores, the calibration corpus's length, and the plan (memory, disk, time) against this machine.

A mistake is a :class:`~scripts.errors.UsageError` (one line, exit 2); a plan the machine cannot
hold is refused the same way unless ``--force``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from scripts.errors import UsageError

#: ``ptq quantize`` flags that only matter to a recipe that reads calibration data.
DATA_FLAGS = ("calib", "calib_bos", "nsamples", "seqlen", "seed", "batch_size", "autocast")


class Explicit(argparse.Action):
    """``store`` that also notes the flag was given on the command line (``args._explicit``), so an
    option left at its default can be told from one the user typed."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        setattr(namespace, self.dest, values)
        given = set(getattr(namespace, "_explicit", set()))
        given.add(self.dest)
        namespace._explicit = given


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def warn(command: str, message: str) -> None:
    """A warning line on stderr (printed even with ``--quiet``: it is about the user's input)."""
    print(f"ptq {command}: warning: {message}", file=sys.stderr, flush=True)


def ignored_data_flags(args: argparse.Namespace, needs_data: bool) -> list[str]:
    """The calibration flags given to a recipe that uses no calibration data."""
    if needs_data:
        return []
    given = getattr(args, "_explicit", set())
    return [flag(d) for d in DATA_FLAGS if d in given]


def check_seqlen(shape: Any, seqlen: int, name: str, what: str = "--seqlen") -> None:
    """``UsageError`` if ``seqlen`` is longer than the positions the model was built for."""
    if isinstance(seqlen, int) and seqlen < 1:
        raise UsageError(f"{what} must be at least 1, got {seqlen}")
    limit = shape.max_positions
    if limit and seqlen > limit:
        raise UsageError(f"{what} {seqlen} is longer than the {limit} positions of {name} "
                         f"(max_position_embeddings in its config); use {what} {limit} or less")


def check_corpus(tokenizer: Any, source: str, nsamples: int, seqlen: int, command: str = "quantize") -> None:
    """Tokenize the calibration split now (cached for the run) and check it holds the windows:
    fewer than ``seqlen + 1`` tokens is an error; fewer than ``nsamples x seqlen`` a warning (the
    random windows then overlap, so the calibration sees the same tokens several times)."""
    from calibration.data.mixture import parse_mixture
    from calibration.data.tokens import tokenize_corpus

    parts = parse_mixture(source)
    if len(parts) > 1:  # each source of a mixture holds its share of the windows
        for part in parts:
            check_corpus(tokenizer, part.source, max(1, round(nsamples * part.share)), seqlen, command)
        return
    total = tokenize_corpus(tokenizer, source, "train").shape[-1]
    if total < seqlen + 1:
        raise UsageError(f"calibration corpus {source} has {total} tokens, too few for one window of --seqlen "
                         f"{seqlen}; use a longer corpus or --seqlen {max(total - 1, 1)} or less")
    if total < nsamples * seqlen:
        warn(command, f"calibration corpus {source} has {total} tokens, fewer than --nsamples {nsamples} x --seqlen "
                      f"{seqlen} = {nsamples * seqlen}: the windows overlap and repeat tokens; a longer corpus or fewer "
                      "samples gives a fairer calibration")


def enforce(verdict: Any, force: bool, command: str) -> None:
    """Refuse a run the machine cannot hold (``UsageError``, the first problem), or warn with ``--force``."""
    if verdict.fits:
        return
    if force:
        for p in verdict.problems:
            warn(command, f"{p} (--force: going ahead)")
        return
    more = f" ({len(verdict.problems) - 1} more problem(s): see ptq plan)" if len(verdict.problems) > 1 else ""
    raise UsageError(f"{verdict.problems[0]}; pass --force to try anyway{more}")


def probe_rate(shape: Any, device: Any) -> float:
    """FLOP/s of the model's own ``[512, hidden] x [hidden, intermediate]`` matmul on ``device``."""
    from calibration.plan import matmul_rate

    widest = max(max(o, i) for o, i in shape.linears.values())
    return matmul_rate(shape.hidden, widest, m=512, dtype=shape.dtype, device=device)


def check_eval(model: str, dtype: str, device_name: str, seqlen: int, windows: int | None, force: bool,
               command: str = "eval", stream: bool | None = False) -> tuple[Any, bool]:
    """Before ``ptq eval`` loads anything: ``--seqlen`` against the model's positions, and the
    evaluation's memory against this machine. ``stream``: the model read from disk one block at a
    time (``None``: when the whole model does not fit and streaming does, with a message).
    Returns ``(shape, stream)``."""
    from calibration.models.loading import resolve_device
    from calibration.plan import Capacity, current_rss, estimate_eval, judge, model_shape

    shape = model_shape(model, dtype)
    check_seqlen(shape, seqlen, model)
    device = resolve_device(device_name)
    base, rate = current_rss(), probe_rate(shape, device)
    verdict = judge(estimate_eval(shape, seqlen, windows or 1, base, rate, device, stream=bool(stream)),
                    Capacity.measure(None, device))
    if stream is None:
        stream = False
        from calibration import distributed

        if not verdict.fits and not distributed.active() and streamable(model) is None:
            streamed = judge(estimate_eval(shape, seqlen, windows or 1, base, rate, device, stream=True),
                             Capacity.measure(None, device))
            if streamed.fits:
                warn(command, f"{verdict.problems[0]}; streaming the model from disk one block at a time instead "
                              "(--stream; --no-stream to refuse)")
                stream, verdict = True, streamed
    enforce(verdict, force, command)
    return shape, stream


def streamable(model: str) -> str | None:
    """Why ``model`` cannot be read one block at a time (``None``: it can): a local folder of safetensors,
    a float model or a ptq checkpoint."""
    from pathlib import Path

    from calibration.models.loading import resolve_source

    source = resolve_source(model)
    if not isinstance(source, Path):
        return f"--stream reads a local model folder, and {model} is a hub id; download it first and pass the folder"
    if not any(source.glob("*.safetensors")):
        return f"--stream reads safetensors, and {source} has none"
    qc = _quantization_config(source)
    if qc is not None and qc.get("quant_method") != "ptq":
        return f"--stream reads float models and ptq checkpoints, not a {qc.get('quant_method')} checkpoint"
    return None


def _quantization_config(folder: Any) -> dict | None:
    import json

    try:
        qc = json.loads((folder / "config.json").read_text()).get("quantization_config")
    except (OSError, ValueError, AttributeError):
        return None
    return qc if isinstance(qc, dict) else None


def check_grid(config: Any, force: bool, command: str = "table") -> None:
    """Before ``ptq table`` computes a cell: every model's positions against the calibration and
    evaluation lengths, and each cell's memory (quantize, then evaluate) against this machine.
    A model whose config cannot be read here is left to the grid runner's own error handling."""
    from calibration.models.loading import ModelNotFoundError, resolve_device
    from calibration.plan import Capacity, RunSpec, current_rss, estimate, estimate_eval, judge, model_shape
    from scripts.grid.hub_check import check_hub

    check_hub(config)  # offline, a grid of hub models fails at once, before any config is looked up
    device = resolve_device(config.device)
    base = current_rss()
    c, e = config.calibration, config.eval
    for entry in config.models:
        for dtype in dict.fromkeys(m.dtype for m in config.methods):
            try:
                shape = model_shape(entry.id, dtype)
            except ModelNotFoundError:
                continue
            check_seqlen(shape, e.seqlen, entry.id, "the eval seqlen")
            rate = probe_rate(shape, device)
            ests = [estimate_eval(shape, e.seqlen, e.max_windows or 1, base, rate, device)]
            for method in (m for m in config.methods if m.dtype == dtype and m.needs_calibration()):
                check_seqlen(shape, c.seqlen, entry.id, "the calibration seqlen")
                ests.append(estimate(shape, RunSpec(method.resolved_steps(), True, c.nsamples, c.seqlen, c.batch_size,
                                                    device=device, work_folder=False), base, rate))
            for est in ests:
                verdict = judge(est, Capacity.measure(None, device))
                if not verdict.fits:
                    enforce(verdict, force, command)  # raises unless --force
                    return
