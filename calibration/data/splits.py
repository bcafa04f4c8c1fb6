"""Split names and the deterministic document split shared by every source.

Every source has two splits: ``train`` (the calibration text) and ``test`` (the
evaluation text). Offline corpora are cut deterministically by document index: every
5th document (``index % 5 == 4``) goes to ``test``, the rest to ``train``.
"""

from __future__ import annotations

from typing import Sequence, TypeVar
from ptq.errors import PTQUserError

__all__ = ["SPLITS", "SPLIT_ALIASES", "TEST_EVERY", "canonical_split", "split_documents"]

T = TypeVar("T")

#: The two canonical split names.
SPLITS: tuple[str, str] = ("train", "test")

#: Accepted spellings -> canonical split name.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "calibration": "train",
    "test": "test",
    "evaluation": "test",
    "validation": "test",
}

#: Every ``TEST_EVERY``-th document (index % TEST_EVERY == TEST_EVERY - 1) is test text.
TEST_EVERY = 5


def canonical_split(split: str) -> str:
    """Return ``"train"`` or ``"test"`` for a split name or alias (case-insensitive).

    ``calibration`` is an alias of ``train``; ``evaluation`` and ``validation`` are
    aliases of ``test``. Anything else raises :class:`ValueError`.
    """
    key = split.strip().lower() if isinstance(split, str) else split
    if key not in SPLIT_ALIASES:
        raise PTQUserError(
            f"unknown split {split!r}; use 'train' (alias 'calibration') "
            "or 'test' (aliases 'evaluation', 'validation')"
        )
    return SPLIT_ALIASES[key]


def split_documents(documents: Sequence[T], split: str) -> list[T]:
    """Select one split of an ordered document list: every 5th document is ``test``.

    Document ``i`` belongs to ``test`` when ``i % 5 == 4`` and to ``train`` otherwise,
    so the split depends only on the order of the documents. When there are too few
    documents for both splits to be non-empty (fewer than 5), both splits get *all*
    the documents: a one-paragraph file still calibrates and evaluates, on the same
    text.
    """
    split = canonical_split(split)
    docs = list(documents)
    if len(docs) < TEST_EVERY:
        return docs
    want_test = split == "test"
    return [d for i, d in enumerate(docs) if (i % TEST_EVERY == TEST_EVERY - 1) == want_test]
