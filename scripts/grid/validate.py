"""Small checks used while parsing grid configs: each raises one ``ValueError`` saying where."""
from __future__ import annotations

from typing import Any
from ptq.errors import PTQUserError


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PTQUserError(f"{where} must be a table (mapping), got {type(value).__name__}")
    return value


def _no_unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PTQUserError(f"unknown key {unknown[0]!r} in {where}; allowed keys: {', '.join(sorted(allowed))}")


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise PTQUserError(f"the config needs a non-empty list '{key}'")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PTQUserError(f"{where} must be a string, got {value!r}")
    return value


def _int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PTQUserError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value
