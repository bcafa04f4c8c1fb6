"""Local text: a ``.txt`` file, a ``.jsonl`` file, or a folder of text files.

- ``.txt`` (also ``.md``, ``.rst``): documents are paragraphs (separated by blank lines).
- ``.jsonl``: one JSON object per line, its ``text`` field is a document.
- folder: every ``.txt``, ``.md``, ``.rst`` (and so ``.rst.txt``) file below it,
  recursively, sorted by relative path; a document is one file.

Files named ``*.rst`` or ``*.rst.txt`` are reST and reduced to prose first (as
``pydocs``). Empty documents are dropped; every 5th remaining document is ``test``.
With fewer than 5 documents (e.g. a one-paragraph file) both splits are the whole
text, so that a tiny file still works for calibration and evaluation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .documents import documents_dataset
from .rest import rest_to_text
from .splits import split_documents
from ptq.errors import PTQUserError

if TYPE_CHECKING:
    import datasets

__all__ = ["LocalSource", "TEXT_SUFFIXES", "read_documents"]

#: File name endings read from folders (``.rst.txt`` ends with ``.txt``).
TEXT_SUFFIXES = (".txt", ".md", ".rst")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _is_rest(path: Path) -> bool:
    return path.name.endswith((".rst", ".rst.txt"))


def _read_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return rest_to_text(text) if _is_rest(path) else text


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n"))]


def _jsonl_documents(path: Path) -> list[str]:
    documents: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PTQUserError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise PTQUserError(f"{path}:{number}: expected an object with a string 'text' field")
            documents.append(record["text"])
    return documents


def _folder_files(folder: Path) -> list[Path]:
    files = [p for p in folder.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES)]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def read_documents(path: Path) -> list[str]:
    """All non-empty documents of a local ``.txt`` / ``.jsonl`` file or folder, in order."""
    if path.is_dir():
        files = _folder_files(path)
        if not files:
            raise PTQUserError(f"folder {path} has no {'/'.join(TEXT_SUFFIXES)} files")
        documents = [_read_text(f).strip() for f in files]
    elif path.name.endswith(".jsonl"):
        documents = _jsonl_documents(path)
    elif path.name.endswith(TEXT_SUFFIXES):
        documents = _paragraphs(_read_text(path))
    else:
        raise PTQUserError(
            f"unsupported file {path}: expected a .txt or .jsonl file or a folder of text files"
        )
    return [d for d in documents if d.strip()]


@dataclass(frozen=True)
class LocalSource:
    """A local file or folder as a text source (documents joined with ``joiner``)."""

    path: Path
    joiner: str = "\n\n"

    def load(self, split: str) -> "datasets.Dataset":
        """The canonical split's documents as a dataset with a ``text`` column."""
        return documents_dataset(self.documents(split))

    def documents(self, split: str) -> list[str]:
        """The canonical split's documents (see the module doc for the rules)."""
        return split_documents(read_documents(self.path), split)

    def fingerprint(self) -> tuple[object, ...]:
        """Identity for caches: resolved path plus size and mtime of every file read."""
        path = self.path.resolve()
        files = _folder_files(path) if path.is_dir() else [path]
        return (str(path),) + tuple(
            (f.as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files
        )
