"""Write an output folder atomically: everything goes to a temporary sibling, renamed at the end."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from scripts.errors import UsageError
from ptq.jsonable import json_default


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


@contextlib.contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UsageError(f"output folder {path} appeared while writing; pass --overwrite to replace it")
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON through a temporary file and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=json_default) + "\n")
    tmp.replace(path)

