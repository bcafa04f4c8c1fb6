"""Build the ``datasets.Dataset`` every source returns: one ``text`` column of documents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import datasets

__all__ = ["documents_dataset"]


def documents_dataset(documents: Iterable[str]) -> "datasets.Dataset":
    """An in-memory dataset with one row per document in a ``text`` column (imports
    ``datasets`` on first use: the offline corpora's token path never needs it)."""
    import datasets

    return datasets.Dataset.from_dict(
        {"text": list(documents)}, features=datasets.Features({"text": datasets.Value("string")})
    )
