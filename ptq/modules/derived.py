"""Values a quantized module derives from its buffers once and reuses across forward passes.

Not buffers: never saved, rebuilt when a source buffer is replaced (a checkpoint load with
``assign=True``) or changed in place (its version counter moves).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ptq.kernels import PACKABLE_BACKENDS, PackedWeight, choose_backend, pack_weight


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


def packed_int8_weight(module: nn.Module, W_q: torch.Tensor, M: int) -> PackedWeight | None:
    """``W_q [N, K]`` (a buffer of ``module``) in the form the int8 backend chosen for ``M`` rows
    computes with (fbgemm's pack, or float32 codes), cached per backend; ``None`` when that
    backend uses the codes as they are (``torch._int_mm``)."""
    backend = choose_backend(M, W_q.shape[1], W_q.shape[0], W_q.device)
    if backend not in PACKABLE_BACKENDS:
        return None
    return derived(module, f"int8_{backend}", (W_q,), lambda: pack_weight(W_q, backend))
