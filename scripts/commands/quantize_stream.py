"""``ptq quantize --stream``: a model larger than memory, quantized one decoder block at a time from
its safetensors shards, each block's packed tensors written to the output as they are made
(:mod:`calibration.runner.streaming`). Chosen by the flag, or by the plan when the model does not
fit in memory and streaming fits."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from scripts.commands.common import info
from scripts.errors import UsageError
from scripts.preflight import warn


def stream_source(args: argparse.Namespace) -> Path | str:
    """The local safetensors folder the blocks are read from, or why it cannot be streamed (a string)."""
    from calibration.models.loading import resolve_source
    from scripts.preflight import streamable

    if args.format != "ptq":
        return (f"--stream writes --format ptq only (got --format {args.format}); write ptq, then convert the "
                "checkpoint with ptq export")
    why = streamable(args.model)
    source = resolve_source(args.model)
    return why if why is not None or not isinstance(source, Path) else source


def choose_stream(args: argparse.Namespace, recipe, command: str = "quantize") -> tuple[bool, object, object]:
    """``(stream, shape, verdict)``: ``--stream`` / ``--no-stream`` as given; by default stream when the plan of an
    in-memory run does not fit in host memory and the streamed plan does (with a message)."""
    from scripts.commands.quantize_parts import plan_run

    from calibration import distributed

    if args.stream and distributed.active():
        raise UsageError("--stream runs in one process; drop it under torchrun (or run without torchrun)")
    if args.stream:
        source = stream_source(args)
        if isinstance(source, str):
            raise UsageError(source)
        return (True, *plan_run(args, recipe, stream=True))
    shape, verdict = plan_run(args, recipe)
    if args.stream is False or verdict.fits or distributed.active():
        return False, shape, verdict
    source = stream_source(args)
    if isinstance(source, str):
        return False, shape, verdict
    _, streamed = plan_run(args, recipe, stream=True)
    if not streamed.fits:
        return False, shape, verdict
    warn(command, f"{verdict.problems[0]}; streaming the model from disk one block at a time instead "
                     f"(--stream; --no-stream to refuse)")
    return True, shape, streamed


def quantize_streamed(args: argparse.Namespace, recipe, out: Path, data: dict | None, verdict) -> int:
    """Quantize block by block from disk into ``out`` (written to a temporary sibling, renamed at the end)."""
    from calibration.models.loading import resolve_device
    from calibration.models.streaming import StreamedModel
    from calibration.runner import quantize_model
    from calibration.runner.streaming import StreamingQuantizer
    from ptq.checkpoint.files import atomic_folder
    from ptq.checkpoint.load import load_tokenizer
    from scripts.commands.quantize_parts import build_report, make_segments

    source = stream_source(args)
    assert isinstance(source, Path)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    streamed = StreamedModel.from_folder(source, args.dtype)
    streamed.load_resident("cpu", head=False)
    tokenizer = load_tokenizer(source)
    if tokenizer is None and data:
        raise UsageError(f"{source} has no tokenizer files; calibration needs one")
    t_load = time.perf_counter() - t0
    segments, bos = make_segments(args, tokenizer, data)
    info(args, f"quantizing {args.model} with {recipe.describe()}, streamed: one block at a time from {source} "
               f"(no work folder: an interrupted streamed run starts over)")
    with atomic_folder(out, overwrite=args.overwrite) as tmp:
        loader = StreamingQuantizer(streamed, tmp)
        result = quantize_model(streamed.model, recipe, segments, batch_size=args.batch_size, device=device,
                                progress=not args.quiet, autocast=args.autocast, loader=loader)
        report = build_report(args, recipe, data, bos, verdict, result, t_load)
        report["stream"] = {"block_bytes": loader.block_bytes, "shards": len(streamed.blocks) + 1}
        t1 = time.perf_counter()
        loader.finish(tokenizer, extra=report)
    info(args, f"wrote {out} ({len(result.records)} layers quantized in {result.timings['quantize']:.1f} s, streamed; "
               f"tensors outside the blocks written in {time.perf_counter() - t1:.1f} s)")
    return 0
