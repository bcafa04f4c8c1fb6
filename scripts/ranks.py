"""``ptq quantize`` / ``ptq eval`` under ``torchrun``: the process group around a command.

``torchrun --nproc-per-node N -m scripts.cli quantize ...`` runs the command in N processes
(:mod:`calibration.distributed`); rank 0 prints and writes, the other ranks stay silent on stdout
(their errors still reach stderr) and wait for it. Commands that have no data-parallel mode refuse
to run under ``torchrun``.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import warnings
from typing import Iterator

from calibration import distributed
from scripts.errors import UsageError

DATA_PARALLEL = ("quantize", "eval")  # the commands that run under torchrun (scripts/cli.py gives them --dist-timeout)


def add_dist_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others at each exchange before it gives "
                        "up with an error (default %(default)s)")


@contextlib.contextmanager
def process_group(args: argparse.Namespace) -> Iterator[None]:
    """Join the ``torchrun`` process group for the command (nothing without ``torchrun``); it is left at exit."""
    if not distributed.launched():
        yield
        return
    if args.command not in DATA_PARALLEL:
        raise UsageError(f"ptq {args.command} has no data-parallel mode; run it as one process, without torchrun "
                         f"(torchrun runs: {', '.join(DATA_PARALLEL)})")
    if not distributed.active():  # once per process: torchrun's rendezvous store serves one group
        distributed.init(args.dist_timeout, getattr(args, "device", None))
        atexit.register(distributed.destroy)
    devnull = None
    if not distributed.is_main():  # one report: rank 0's
        devnull = open(os.devnull, "w")
        sys.stdout = devnull
        args.quiet = True
        warnings.simplefilter("ignore")
    try:
        yield
    finally:
        if devnull is not None:
            sys.stdout = sys.__stdout__
            devnull.close()
