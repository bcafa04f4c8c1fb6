"""calibration: corpora, observers, model loading, recipes and the block-by-block runner.

Sits on top of :mod:`ptq`; knows nothing about perplexity or tables. :func:`oneshot` is the one
call for research code (see :mod:`calibration.api`); it is imported on first use, so that
``import calibration.data`` stays light.
"""
from __future__ import annotations

from typing import Any

__all__ = ["QuantizedModel", "oneshot"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from calibration import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
