"""Write an output folder atomically: everything goes to a temporary sibling, renamed at the end."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from scripts.errors import UsageError
from ptq.checkpoint import files


def check_output(path: str | Path, overwrite: bool, needed_bytes: int = 0) -> Path:
    """Fail early (before any work) if ``path`` cannot be written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"output folder {path} already exists; pass --overwrite to replace it")
    if path.exists() and not path.is_dir():
        raise UsageError(f"output {path} exists and is not a folder")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"the parent folder of --output ({parent}) does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write in {parent}; choose a writable --output")
    free = shutil.disk_usage(parent).free
    if needed_bytes and free < needed_bytes * 1.1:
        raise UsageError(
            f"not enough disk space in {parent}: the output needs about {needed_bytes / 2**20:.0f} MiB, "
            f"{free / 2**20:.0f} MiB free"
        )
    return path


atomic_folder = files.atomic_folder  # write to a temporary sibling, rename on success (one implementation)


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on writing ``path`` (a ``.NAME.ptq-lock`` file beside it, ``flock``ed):
    a second run writing the same output fails at once with a clear message instead of both
    racing on one folder. The kernel drops the lock when the process dies, even by SIGKILL."""
    import fcntl

    path = Path(path)
    lock = path.parent / f".{path.name}.ptq-lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(f"another ptq run (pid {holder}) is writing {path}; wait for it to finish or "
                             "choose another --output") from None
        if os.path.exists(lock) and os.stat(lock).st_ino == os.fstat(fd).st_ino:
            break  # the file is still the lock (not unlinked by a run that just finished)
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def work_folder_path(output: str | Path) -> Path:
    """Where ``ptq quantize`` keeps a resumable run of ``output``: the hidden sibling ``.NAME.ptq-work``."""
    output = Path(output)
    return output.parent / f".{output.name}.ptq-work"
