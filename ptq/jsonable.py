"""JSON output of the package: one encoder for reports, records and configs, one writer.

Objects with ``to_dict()`` become that dict, tensors / arrays their ``tolist()``, anything
else its ``str``. :func:`write_json` writes through a temporary sibling file and a rename, so a
reader never sees half a file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def json_default(obj: Any) -> Any:
    """``default=`` hook of :func:`json.dumps` for reports, records and configs."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def to_json(data: Any) -> str:
    """``data`` as indented JSON text with a final newline (the layout of every JSON file ptq writes)."""
    return json.dumps(data, indent=2, default=json_default) + "\n"


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(to_json(data))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
