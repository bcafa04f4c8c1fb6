"""``ptq eval --stream``: open a float model folder or a ptq checkpoint for a streamed evaluation
(:mod:`evaluations.streamed`: every window through one block at a time, each block read once)."""
from __future__ import annotations

import argparse
from typing import Any

from scripts.commands.common import info
from scripts.errors import UsageError


def open_streamed(args: argparse.Namespace, quantized: bool, tasks: list[str]) -> tuple[Any, Any]:
    """``(StreamedModel with its resident tensors loaded, tokenizer)``; refuses what a streamed model cannot do."""
    from calibration.models.loading import resolve_source
    from calibration.models.streaming import StreamedModel
    from ptq.checkpoint.load import load_tokenizer
    from scripts.preflight import streamable

    from calibration import distributed

    if distributed.active():
        raise UsageError("--stream runs in one process; drop it under torchrun (or run without torchrun)")
    why = streamable(args.model)
    if why is not None:
        raise UsageError(why)
    if tasks:
        raise UsageError("--tasks runs lm-eval on the model in memory; drop --stream (or --tasks)")
    if args.reference is not None and args.reference.lower() != "none":
        raise UsageError("--stream computes no float reference (the float model would be streamed a second time); "
                         "drop --reference")
    source = resolve_source(args.model)
    streamed = (StreamedModel.from_checkpoint(source, args.dtype) if quantized
                else StreamedModel.from_folder(source, args.dtype))
    streamed.load_resident("cpu", head=True)
    tokenizer = load_tokenizer(source)
    if tokenizer is None:
        raise UsageError(f"{source} has no tokenizer files; evaluation needs one")
    info(args, f"streaming {args.model} from disk: every window through one block at a time "
               f"({len(streamed.blocks)} blocks, each read once per dataset); no float reference")
    return streamed, tokenizer
