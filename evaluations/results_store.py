"""A JSON Lines store of finished grid cells: one line per (model, method, dataset, seed) cell.

Each cell is appended as soon as it is computed (written, flushed and fsynced), so an
interrupted grid keeps every finished cell and a rerun skips them (:meth:`done_keys`).
A cell's ``key`` is :func:`cell_key` of everything that changes its number. A truncated
last line (the process was killed mid-write) is ignored when reading and cut off before
the next append.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping
from ptq.jsonable import json_default
from ptq.errors import PTQUserError


def cell_key(parts: Mapping[str, Any]) -> str:
    """A stable hash of a cell's identity (model, resolved recipe, dtype, dataset, calibration, seed, eval)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class ResultsStore:
    """Append-only JSON Lines file of cell records (dicts with a ``key``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record, in file order (a broken last line is skipped)."""
        if not self.path.is_file():
            return
        with self.path.open("r", encoding="utf-8") as f:
            lines = f.read().split("\n")
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i == last:
                    continue  # interrupted write of the last line
                raise PTQUserError(f"results store {self.path} line {i + 1} is not valid JSON") from None
            if isinstance(rec, dict) and "key" in rec:
                yield rec

    def by_key(self) -> dict[str, dict[str, Any]]:
        """The latest record of each key."""
        return {rec["key"]: rec for rec in self.records()}

    def done_keys(self) -> set[str]:
        return set(self.by_key())

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a line, durable before returning."""
        if "key" not in record:
            raise PTQUserError("a results record needs a 'key'")
        line = json.dumps(record, sort_keys=True, default=json_default)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_tail()
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _drop_partial_tail(self) -> None:
        """Cut a last line without its newline (a write interrupted before it finished)."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        with self.path.open("r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())

