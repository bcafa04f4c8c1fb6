"""Flags shared by several sub-commands."""
from __future__ import annotations

import argparse
import sys

from scripts.preflight import Explicit
from calibration.data.segments import BOS_CHOICES


def add_model_arguments(p: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        p.add_argument("model", nargs="?", default="smollm2-135m",
                       help="HF id, local folder, .gguf file, or the alias smollm2-135m (default)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")


def add_calibration_arguments(p: argparse.ArgumentParser, nsamples: int = 128) -> None:
    g = p.add_argument_group("calibration data")
    g.add_argument("--calib", default="web-ot", action=Explicit,
                   help="calibration corpus: a named source, a .txt/.jsonl/folder path, or a mixture by token share "
                        "SOURCE:SHARE,... such as web-ot:0.5,pydocs:0.5 (default web-ot)")
    g.add_argument("--calib-bos", default="auto", action=Explicit, choices=sorted(BOS_CHOICES),
                   help="start every calibration segment with the BOS token: auto (default) when the tokenizer adds "
                        "one to every text, on, or off (the GPTQ paper's raw windows)")
    g.add_argument("--nsamples", type=int, action=Explicit, default=nsamples, help=f"number of calibration segments (default {nsamples})")
    g.add_argument("--seqlen", type=int, default=512, action=Explicit, help="tokens per segment (default 512)")
    g.add_argument("--seed", type=int, action=Explicit, default=0, help="seed of the segment sampling (default 0)")
    g.add_argument("--batch-size", type=int, action=Explicit, default=8, help="segments per forward pass during calibration (default 8)")
    g.add_argument("--autocast", default=None, action=Explicit, choices=["bfloat16", "float16"],
                   help="run the calibration forward passes under torch.autocast in this dtype (about 2x faster "
                        "on CPUs with AVX-512 BF16); weights and the quantization math stay float32 "
                        "(default: off, the model's dtype)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def info(args: argparse.Namespace, msg: str) -> None:
    """A progress line on stderr (silenced by --quiet)."""
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def source_gguf(model: str | None, vocab_size: int):
    """The GGUF file a model came from (the built-in alias or a ``.gguf`` path) when its tokenizer has
    ``vocab_size`` tokens: GGUF exports copy that file's tokenizer keys. ``None`` otherwise."""
    from pathlib import Path

    from calibration.models.loading import ALIASES
    from ptq.checkpoint.gguf_vocab import gguf_vocab_size

    if not model:
        return None
    path = ALIASES[model]() if model in ALIASES else Path(model)
    if path.suffix != ".gguf" or not path.is_file():
        return None
    return path if gguf_vocab_size(path) == vocab_size else None
