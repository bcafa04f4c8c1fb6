"""Resolve a source name or path, and load a split as documents or as one text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .local import LocalSource
from .registry import SOURCES, TextSource, source_documents, unknown_source_message
from ptq.errors import PTQUserError

if TYPE_CHECKING:
    import datasets
from .splits import canonical_split

__all__ = ["resolve_source", "source_key", "load_split", "load_text"]

Source = str | os.PathLike[str]


def resolve_source(source: Source) -> TextSource:
    """The registered source of that name, else a :class:`LocalSource` for an existing path.

    Registered names win over paths. Anything else raises :class:`ValueError` listing
    the known names.
    """
    name = os.fspath(source)
    if name in SOURCES:
        return SOURCES[name]
    path = Path(name).expanduser()
    if name and path.exists():
        return LocalSource(path)
    raise PTQUserError(unknown_source_message(name))


def source_key(source: Source) -> tuple[object, ...]:
    """Cache identity of a source: its name, or a local path with its files' sizes/mtimes."""
    resolved = resolve_source(source)
    if isinstance(resolved, LocalSource):
        return ("path",) + resolved.fingerprint()
    return ("name", os.fspath(source))


def load_split(source: Source, split: str) -> "datasets.Dataset":
    """One split of a source as a :class:`datasets.Dataset` with a ``text`` column.

    Args:
        source: a registered name (``web-ot``, ``web-nt``, ``pydocs``, ``wikitext2``,
            ``ptb``, ``c4``, ...) or a path to a ``.txt`` / ``.jsonl`` file or folder.
        split: ``train`` (alias ``calibration``) or ``test`` (aliases ``evaluation``,
            ``validation``).

    Raises:
        ValueError: unknown source or split.
        DatasetUnavailableError: the source exists but its text cannot be obtained here
            (hub unreachable, corpus package missing).
    """
    split = canonical_split(split)
    return resolve_source(source).load(split)


def load_text(source: Source, split: str) -> str:
    """The split's documents joined into one text with the source's joiner.

    The joiner is ``"\\n\\n"`` unless the source says otherwise (``" "`` for ``ptb`` and
    ``c4``, as in the GPTQ reference code).
    """
    split = canonical_split(split)
    resolved = resolve_source(source)
    return resolved.joiner.join(source_documents(resolved, split))
