"""Write an output folder atomically: everything goes to a temporary sibling, renamed at the end."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

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

