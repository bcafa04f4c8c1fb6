"""Values a quantized module derives from its buffers once and reuses across forward passes.

Not buffers: never saved, rebuilt when a source buffer is replaced (a checkpoint load with
``assign=True``) or changed in place (its version counter moves).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


def _key(t: torch.Tensor | None) -> tuple[int, int]:
    if t is None:
        return (0, 0)
    try:
        version = t._version
    except RuntimeError:  # an inference-mode tensor has no version counter
        version = -1
    return (t.data_ptr(), version)


def derived(module: nn.Module, name: str, sources: tuple[torch.Tensor | None, ...], build: Callable[[], Any]) -> Any:
    """``build()``, cached on ``module`` under ``name`` until one of ``sources`` changes."""
    key = tuple(_key(t) for t in sources)
    cache = module.__dict__.get(f"_derived_{name}")
    if cache is None or cache[0] != key:
        cache = (key, build())
        module.__dict__[f"_derived_{name}"] = cache
    return cache[1]
