"""``pydocs``: the Python 3.11 documentation sources from Debian's ``python3.11-doc``.

The ``*.rst.txt`` files under ``/usr/share/doc/python3.11/html/_sources`` (or wherever
``dpkg -L python3.11-doc`` puts them) are reduced to prose by
:func:`calibration.data.rest.rest_to_text`. A document is one file, files sorted by
path; every 5th file (index % 5 == 4) is ``test``. Files that reduce to nothing (pure
tables of contents) are dropped after the split, so the assignment of files to splits
does not depend on the reducer.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from .errors import OFFLINE_SOURCES_HINT, DatasetUnavailableError
from .registry import register_source
from .rest import rest_to_text
from .splits import split_documents

__all__ = ["DEFAULT_PYDOCS_DIR", "pydocs_dir", "pydocs_files", "pydocs_documents"]

DEBIAN_PACKAGE = "python3.11-doc"
DEFAULT_PYDOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")
SUFFIX = ".rst.txt"


def _dpkg_files(package: str = DEBIAN_PACKAGE) -> list[str]:
    """Paths installed by a Debian package (empty when dpkg or the package is missing)."""
    try:
        result = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return result.stdout.splitlines() if result.returncode == 0 else []


def pydocs_dir() -> Path:
    """The folder holding the ``*.rst.txt`` sources; a clear error when not installed."""
    if DEFAULT_PYDOCS_DIR.is_dir():
        return DEFAULT_PYDOCS_DIR
    for line in _dpkg_files():
        head, sep, _ = line.partition("/_sources/")
        if sep and line.endswith(SUFFIX) and Path(head + "/_sources").is_dir():
            return Path(head + "/_sources")
    raise DatasetUnavailableError(
        "the 'pydocs' source needs the Python 3.11 documentation sources of the Debian "
        f"package {DEBIAN_PACKAGE} (not found at {DEFAULT_PYDOCS_DIR}): install it with "
        f"`apt-get install {DEBIAN_PACKAGE}`. Other {OFFLINE_SOURCES_HINT}"
    )


def pydocs_files(root: Path | None = None) -> list[Path]:
    """The ``*.rst.txt`` files under ``root`` (default :func:`pydocs_dir`), sorted by path."""
    root = pydocs_dir() if root is None else root
    files = [p for p in root.rglob(f"*{SUFFIX}") if p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


@functools.lru_cache(maxsize=1)
def pydocs_documents() -> tuple[str, ...]:
    """Every file reduced to prose, in path order (about 2.5 s once per process)."""
    return tuple(
        rest_to_text(path.read_text(encoding="utf-8", errors="replace"))
        for path in pydocs_files()
    )


@register_source("pydocs")
def pydocs(split: str) -> list[str]:
    """Python 3.11 documentation (reST reduced to prose), one file per document."""
    return [d for d in split_documents(pydocs_documents(), split) if d]
