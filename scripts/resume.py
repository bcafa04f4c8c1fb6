"""Stopping and resuming ``ptq quantize``: the run's key, SIGINT / SIGTERM at a safe point, and
the fault-injection hook of the tests.

The first SIGINT (Ctrl-C) or SIGTERM lets the block being quantized finish and be saved in the
work folder, then stops with exit code 130 / 143 and says how to resume; a second Ctrl-C stops
at once (the finished blocks are kept). ``PTQ_FAULT_AFTER_BLOCK=K[:SIGNAL]`` sends the process
``SIGNAL`` (default ``SIGKILL``) once block ``K`` is saved: the fault-injection tests' crash.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

FAULT_ENV = "PTQ_FAULT_AFTER_BLOCK"


def source_identity(name: str) -> Any:
    """What identifies a model or corpus source's content cheaply: a local file's or folder's files'
    names, sizes and modification times; the alias's packaged file; else the name (a hub id)."""
    path = Path(name).expanduser()
    if name == "smollm2-135m":
        from calibration.models.loading import ALIASES

        path = ALIASES[name]()
    if path.is_file():
        st = path.stat()
        return [str(path.resolve()), st.st_size, int(st.st_mtime)]
    if path.is_dir():
        return [str(path.resolve())] + [[f.name, f.stat().st_size, int(f.stat().st_mtime)]
                                        for f in sorted(path.iterdir()) if f.is_file()]
    return name


def quantize_key(args: Any, recipe: Any, data: dict[str, Any] | None) -> str:
    """The work-folder key of a ``ptq quantize`` run: everything that decides its result."""
    from calibration.runner.workdir import run_key
    from scripts.versions import versions

    return run_key(model=source_identity(args.model), dtype=args.dtype, device=args.device, recipe=recipe.to_list(),
                   data=data, calib=source_identity(args.calib) if data else None, batch_size=args.batch_size,
                   autocast=args.autocast, versions=versions())


@contextlib.contextmanager
def stop_signals(log: Callable[[str], None]) -> Iterator[dict[str, int | None]]:
    """Catch SIGINT / SIGTERM for the duration: the first one is recorded (``state["signal"]``) for
    the next safe point; a second SIGINT raises ``KeyboardInterrupt``. Main thread only."""
    state: dict[str, int | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: Any) -> None:
        if state["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        state["signal"] = signum
        log(f"{signal.Signals(signum).name}: stopping once the current block is saved (Ctrl-C again to stop now)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def after_block_hook(state: dict[str, int | None]) -> Callable[[int, int], None]:
    """The work folder's ``after_block``: inject a fault when asked, stop when a signal came."""
    from calibration.runner.workdir import RunInterrupted

    def hook(next_block: int, num_blocks: int) -> None:
        fault = os.environ.get(FAULT_ENV)
        if fault:
            block, _, name = fault.partition(":")
            if int(block) == next_block:
                os.kill(os.getpid(), getattr(signal, name or "SIGKILL"))
        if state["signal"] is not None and next_block < num_blocks:
            raise RunInterrupted(next_block, num_blocks, signal.Signals(state["signal"]).name)

    return hook


def exit_code(state: dict[str, int | None]) -> int:
    """130 for SIGINT, 143 for SIGTERM (128 + the signal's number)."""
    return 128 + int(state["signal"] or signal.SIGINT)
