"""The ``ptq`` command line: ``quantize``, ``eval``, ``inspect``, ``reproduce``.

Every user mistake is one line on stderr and exit code 2 (set ``PTQ_DEBUG=1`` for the
traceback); all argument parsing and printing lives in :mod:`scripts`.
"""
from __future__ import annotations

import argparse
import os
import sys

from scripts.commands import COMMANDS
from scripts.errors import describe, is_user_error
from scripts.ranks import DATA_PARALLEL, add_dist_arguments, process_group


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptq", description="Calibration-based post-training quantization of causal language models."
    )
    from ptq import __version__

    parser.add_argument("--version", action="version", version=f"ptq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        if name in DATA_PARALLEL:
            add_dist_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def quiet_libraries() -> None:
    """``--quiet``: no progress bars or info logs from transformers / datasets / the hub."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"  # datasets is imported only for hub corpora
    os.environ["DATASETS_VERBOSITY"] = "error"
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if "datasets" in sys.modules:
        datasets = sys.modules["datasets"]
        datasets.utils.logging.disable_progress_bar()
        datasets.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is not None:
        from ptq.kernels.allocator import keep_freed_memory

        keep_freed_memory()  # int8 layers reuse freed blocks instead of page-faulting new ones per call
    if getattr(args, "quiet", False):
        quiet_libraries()
    try:
        with process_group(args):  # under torchrun: the data-parallel process group (scripts/ranks.py)
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("ptq: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user errors become one line
        if os.environ.get("PTQ_DEBUG") or not is_user_error(exc):
            raise
        print(f"ptq {args.command}: error: {describe(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
