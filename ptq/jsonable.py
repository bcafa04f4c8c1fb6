"""JSON encoding of what reports hold: objects with ``to_dict()``, tensors / arrays, the rest as ``str``."""
from __future__ import annotations

from typing import Any


def json_default(obj: Any) -> Any:
    """``default=`` hook of :func:`json.dumps` for reports, records and configs."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
