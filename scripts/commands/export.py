"""``ptq export``: convert a ptq checkpoint to a serving format without calibrating again."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptq.checkpoint.formats import FORMATS
from ptq.errors import PTQUserError
from scripts.commands.common import add_quiet, info, source_gguf
from scripts.output import atomic_folder, check_output

HELP = "convert a quantized ptq checkpoint to another format (gptq, compressed-tensors, gguf:Q4_0 ...)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a folder written by ptq quantize (--format ptq or gptq)")
    p.add_argument("--format", required=True, metavar="{" + ",".join(FORMATS) + "}",
                   help="compressed-tensors (vLLM / transformers; needs ptq[serve]), gguf:Q4_0|Q4_1|Q8_0 "
                        "(llama.cpp; only grids the block type holds exactly), gptq or ptq")
    p.add_argument("--output", required=True, help="folder to write (must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_quiet(p)


def read_report(folder: Path) -> dict:
    """The checkpoint's ``ptq.json`` (empty if it has none or it is unreadable)."""
    try:
        data = json.loads((folder / "ptq.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run(args: argparse.Namespace) -> int:
    from ptq.checkpoint import is_quantized_checkpoint, load_quantized
    from ptq.checkpoint.formats import export, parse_format

    parse_format(args.format)  # an unknown format fails before anything is read
    src = Path(args.checkpoint)
    if not is_quantized_checkpoint(src):
        raise PTQUserError(f"{src} is not a quantized checkpoint folder (config.json with a ptq or gptq "
                         "quantization_config); write one with ptq quantize --output")
    out = check_output(args.output, args.overwrite)
    if out.resolve() == src.resolve():
        raise PTQUserError("--output must differ from the checkpoint folder")
    model, tokenizer = load_quantized(src)
    report = read_report(src)
    extra = {**report, "exported_from": str(src), "format": args.format}
    tok_gguf = source_gguf(report.get("model"), model.config.vocab_size) if args.format.lower().startswith("gguf") else None
    info(args, f"exporting {src} as {args.format}" + (f" (tokenizer from {tok_gguf.name})" if tok_gguf else ""))
    with atomic_folder(out, overwrite=args.overwrite) as tmp:
        export(model, tmp, args.format, tokenizer=tokenizer, extra=extra, overwrite=True, tokenizer_gguf=tok_gguf)
    info(args, f"wrote {out}")
    return 0
