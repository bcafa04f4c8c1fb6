"""``coreutils``: the GNU Coreutils manual, from the Info file Debian's ``coreutils`` installs.

A third offline text in no calibration set: technical English about shell commands and
their options, unlike the Bible (``web-ot`` / ``web-nt``) and unlike the Python
documentation (``pydocs``). ``coreutils`` is an essential Debian package, so the file
``/usr/share/info/coreutils.info.gz`` is on every Debian machine that keeps its
documentation (slim images that drop ``/usr/share/info`` get it back with
``apt-get install --reinstall coreutils``).

An Info file is plain text cut into nodes by the ``\\x1f`` character; each node starts
with a ``File: ..., Node: ..., Next: ...`` line. A document is one node with that line
removed and its trailing ``* Menu:`` (a list of links) cut off; the preamble, the tag table
and the index nodes are dropped. Nodes keep file order; every 5th node (index % 5 == 4) is
``test``, as for every offline corpus (:func:`calibration.data.splits.split_documents`).
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

from .errors import OFFLINE_SOURCES_HINT, DatasetUnavailableError
from .registry import register_source
from .splits import split_documents

__all__ = ["COREUTILS_INFO", "coreutils_info_path", "info_nodes", "coreutils_documents"]

DEBIAN_PACKAGE = "coreutils"
COREUTILS_INFO = Path("/usr/share/info/coreutils.info.gz")

_NODE_SEPARATOR = "\x1f"
_INDEX_MARK = "\x00\x08[index\x00\x08]"  # makeinfo's marker of an index node


def coreutils_info_path() -> Path:
    """The Info file; a clear error when the documentation is not installed."""
    if COREUTILS_INFO.is_file():
        return COREUTILS_INFO
    raise DatasetUnavailableError(
        f"the 'coreutils' source needs the GNU Coreutils manual {COREUTILS_INFO} of the Debian "
        f"package {DEBIAN_PACKAGE}: install it with `apt-get install --reinstall {DEBIAN_PACKAGE}` "
        f"(a slim image may exclude /usr/share/info). Other {OFFLINE_SOURCES_HINT}"
    )


def info_nodes(text: str) -> list[str]:
    """The prose of each node of an Info file, in file order.

    A node is the text after a ``\\x1f`` line whose first line starts with ``File:``; that
    line goes, so does everything from a ``* Menu:`` line on; index nodes and the tag table
    (which do not start with ``File:``) are dropped, and trailing spaces of each line.
    Nodes that are empty after that are dropped too.
    """
    nodes = []
    for chunk in text.split(_NODE_SEPARATOR)[1:]:
        header, _, body = chunk.lstrip("\n").partition("\n")
        if not header.startswith("File:") or _INDEX_MARK in body:
            continue
        body = body.split("\n* Menu:", 1)[0]
        body = "\n".join(line.rstrip() for line in body.splitlines()).strip("\n")
        if body.strip():
            nodes.append(body)
    return nodes


@functools.lru_cache(maxsize=1)
def coreutils_documents() -> tuple[str, ...]:
    """Every node of the manual, in file order (read once per process)."""
    with gzip.open(coreutils_info_path(), "rt", encoding="utf-8", errors="replace") as handle:
        return tuple(info_nodes(handle.read()))


@register_source("coreutils")
def coreutils(split: str) -> list[str]:
    """GNU Coreutils manual (Info), one node per document."""
    return split_documents(coreutils_documents(), split)
