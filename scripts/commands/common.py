"""Flags shared by several sub-commands."""
from __future__ import annotations

import argparse
import sys

from calibration.data.segments import BOS_CHOICES


def add_model_arguments(p: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        p.add_argument("model", nargs="?", default="smollm2-135m",
                       help="HF id, local folder, .gguf file, or the alias smollm2-135m (default)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")


def add_calibration_arguments(p: argparse.ArgumentParser, nsamples: int = 128) -> None:
    g = p.add_argument_group("calibration data")
    g.add_argument("--calib", default="web-ot",
                   help="calibration corpus: a named source, a .txt/.jsonl/folder path, or a mixture by token share "
                        "SOURCE:SHARE,... such as web-ot:0.5,pydocs:0.5 (default web-ot)")
    g.add_argument("--calib-bos", default="auto", choices=sorted(BOS_CHOICES),
                   help="start every calibration segment with the BOS token: auto (default) when the tokenizer adds "
                        "one to every text, on, or off (the GPTQ paper's raw windows)")
    g.add_argument("--nsamples", type=int, default=nsamples, help=f"number of calibration segments (default {nsamples})")
    g.add_argument("--seqlen", type=int, default=512, help="tokens per segment (default 512)")
    g.add_argument("--seed", type=int, default=0, help="seed of the segment sampling (default 0)")
    g.add_argument("--batch-size", type=int, default=8, help="segments per forward pass during calibration (default 8)")
    g.add_argument("--autocast", default=None, choices=["bfloat16", "float16"],
                   help="run the calibration forward passes under torch.autocast in this dtype (about 2x faster "
                        "on CPUs with AVX-512 BF16); weights and the quantization math stay float32 "
                        "(default: off, the model's dtype)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def info(args: argparse.Namespace, msg: str) -> None:
    """A progress line on stderr (silenced by --quiet)."""
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)
