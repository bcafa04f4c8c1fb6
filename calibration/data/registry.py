"""The registry of named text sources (``web-ot``, ``pydocs``, ``wikitext2``, ...).

A source is any object with a ``joiner`` (the string that joins its documents into
one text) and a ``load(split)`` method returning a :class:`datasets.Dataset` with a
``text`` column, for ``split`` in ``{"train", "test"}`` (already canonical).
Functions become sources with the :func:`register_source` decorator; objects (such as
the hub dataset descriptions in :mod:`calibration.data.hub`) are added with
:func:`add_source`. Tests may swap an entry with ``monkeypatch.setitem(SOURCES, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import datasets

__all__ = [
    "TextSource",
    "FunctionSource",
    "SOURCES",
    "register_source",
    "add_source",
    "available_sources",
    "unknown_source_message",
]

DEFAULT_JOINER = "\n\n"


@runtime_checkable
class TextSource(Protocol):
    """What the registry holds: a joiner and a split loader."""

    joiner: str

    def load(self, split: str) -> datasets.Dataset:
        """Return the canonical split (``"train"`` or ``"test"``) with a ``text`` column."""
        ...


@dataclass(frozen=True)
class FunctionSource:
    """A source backed by a function ``split -> datasets.Dataset``."""

    name: str
    loader: Callable[[str], datasets.Dataset]
    joiner: str = DEFAULT_JOINER

    def load(self, split: str) -> datasets.Dataset:
        """Call the wrapped loader for a canonical split."""
        return self.loader(split)


#: Registered sources by name.
SOURCES: dict[str, TextSource] = {}


def add_source(name: str, source: TextSource, *, replace: bool = False) -> TextSource:
    """Register ``source`` under ``name``; a second registration needs ``replace=True``."""
    if not replace and name in SOURCES:
        raise ValueError(f"a dataset source named {name!r} is already registered")
    if not isinstance(source, TextSource):
        raise TypeError(f"{source!r} is not a text source (needs .joiner and .load(split))")
    SOURCES[name] = source
    return source


def register_source(
    name: str, *, joiner: str = DEFAULT_JOINER, replace: bool = False
) -> Callable[[Callable[[str], datasets.Dataset]], Callable[[str], datasets.Dataset]]:
    """Decorator registering ``fn(split) -> datasets.Dataset`` as the source ``name``.

    ``joiner`` is the string placed between documents by :func:`load_text` (and so by
    tokenization). The function receives the canonical split name and is returned
    unchanged.
    """

    def decorate(fn: Callable[[str], datasets.Dataset]) -> Callable[[str], datasets.Dataset]:
        add_source(name, FunctionSource(name, fn, joiner), replace=replace)
        return fn

    return decorate


def available_sources() -> list[str]:
    """Names of the registered sources, sorted."""
    return sorted(SOURCES)


def unknown_source_message(source: str) -> str:
    """The error message for a name that is neither registered nor an existing path."""
    return (
        f"unknown dataset {source!r}; known: {', '.join(available_sources())}, "
        "or a path to a .txt/.jsonl file or folder"
    )
