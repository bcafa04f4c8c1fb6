"""The registry of named text sources (``web-ot``, ``pydocs``, ``wikitext2``, ...).

A source is any object with a ``joiner`` (the string that joins its documents into
one text) and a ``load(split)`` method returning a :class:`datasets.Dataset` with a
``text`` column, for ``split`` in ``{"train", "test"}`` (already canonical). A source may
also have ``documents(split)`` returning the documents as a list of strings: tokenization
then never builds a ``Dataset``, and the offline corpora never import ``datasets`` (with
``pyarrow`` and ``pandas``, about 95 MB of resident memory; see :func:`source_documents`).
Functions become sources with the :func:`register_source` decorator; objects (such as
the hub dataset descriptions in :mod:`calibration.data.hub`) are added with
:func:`add_source`. Tests may swap an entry with ``monkeypatch.setitem(SOURCES, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, Union, runtime_checkable

from .documents import documents_dataset
from ptq.errors import PTQUserError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "TextSource",
    "FunctionSource",
    "SOURCES",
    "register_source",
    "add_source",
    "available_sources",
    "unknown_source_message",
    "source_documents",
    "DOMAINS",
    "source_domain",
]

DEFAULT_JOINER = "\n\n"


@runtime_checkable
class TextSource(Protocol):
    """What the registry holds: a joiner and a split loader."""

    joiner: str

    def load(self, split: str) -> "datasets.Dataset":
        """Return the canonical split (``"train"`` or ``"test"``) with a ``text`` column."""
        ...


#: What a registered loader function returns: the documents, or a dataset with a ``text`` column.
Loaded = Union["datasets.Dataset", Iterable[str]]


def _is_dataset(value: object) -> bool:
    return hasattr(value, "column_names")  # a datasets.Dataset, told apart without importing datasets


@dataclass(frozen=True)
class FunctionSource:
    """A source backed by a function ``split -> documents`` (a list of strings, or a
    ``datasets.Dataset`` with a ``text`` column)."""

    name: str
    loader: Callable[[str], Loaded]
    joiner: str = DEFAULT_JOINER

    def load(self, split: str) -> "datasets.Dataset":
        """The canonical split as a dataset with a ``text`` column."""
        loaded = self.loader(split)
        return loaded if _is_dataset(loaded) else documents_dataset(loaded)  # type: ignore[return-value]

    def documents(self, split: str) -> list[str]:
        """The canonical split's documents."""
        loaded = self.loader(split)
        return list(loaded["text"] if _is_dataset(loaded) else loaded)  # type: ignore[index]


def source_documents(source: TextSource, split: str) -> list[str]:
    """A source's documents of a canonical split: its ``documents(split)`` if it has one
    (no ``Dataset`` built, ``datasets`` not imported), else ``load(split)["text"]``."""
    documents = getattr(source, "documents", None)
    return list(documents(split)) if callable(documents) else list(source.load(split)["text"])


#: Registered sources by name.
SOURCES: dict[str, TextSource] = {}


def add_source(name: str, source: TextSource, *, replace: bool = False) -> TextSource:
    """Register ``source`` under ``name``; a second registration needs ``replace=True``."""
    if not replace and name in SOURCES:
        raise PTQUserError(f"a dataset source named {name!r} is already registered")
    if not isinstance(source, TextSource):
        raise TypeError(f"{source!r} is not a text source (needs .joiner and .load(split))")
    SOURCES[name] = source
    return source


#: The kind of text of a registered source, when several sources share one (``web-ot`` and
#: ``web-nt`` are both the Bible); a source not listed is its own domain.
DOMAINS: dict[str, str] = {}


def source_domain(source: str) -> str:
    """The domain of a source name or path: its :data:`DOMAINS` entry, else the name itself.

    Text is "in domain" for a calibration set that holds a source of the same domain
    (``web-nt`` for ``web-ot``: other chapters of the same Bible).
    """
    return DOMAINS.get(source, source)


def register_source(
    name: str, *, joiner: str = DEFAULT_JOINER, replace: bool = False, domain: str | None = None
) -> Callable[[Callable[[str], Loaded]], Callable[[str], Loaded]]:
    """Decorator registering ``fn(split) -> documents`` as the source ``name``: ``fn`` returns
    the split's documents (strings) or a ``datasets.Dataset`` with a ``text`` column.

    ``joiner`` is the string placed between documents by :func:`load_text` (and so by
    tokenization). The function receives the canonical split name and is returned
    unchanged. ``domain`` names the kind of text when several sources share it (see
    :func:`source_domain`).
    """

    def decorate(fn: Callable[[str], Loaded]) -> Callable[[str], Loaded]:
        add_source(name, FunctionSource(name, fn, joiner), replace=replace)
        if domain is not None:
            DOMAINS[name] = domain
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
