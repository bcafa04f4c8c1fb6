"""How a :class:`~ptq.modules.quant_linear.QuantLinear` computes its forward pass: the backend choice
(:func:`ptq.kernels.weight_only_matmul.choose_weight_backend`) and the per-module derived weights.

* ``"dequant"``: ``scale * (Q - zero)`` rebuilt on every call (optionally ``tile_rows`` rows at a
  time): no memory beyond the packed buffers, the slowest; the exact reference.
* ``"cached"``: the same dequantized weight, built once in the activation dtype and reused until a
  buffer changes (:func:`ptq.modules.derived.derived`). Memory: one float weight per layer on top
  of the packed buffers (4 bytes per weight in float32, 2 in bfloat16), i.e. a packed model then
  takes about the float model's memory while it runs; the numbers are the ``"dequant"`` path's,
  bit for bit.
* ``"int4pack"`` / ``"int8pack"``: PyTorch's fused kernels on a layout derived once from the
  codes (:mod:`ptq.kernels.weight_only_matmul`); equal to the reference up to float rounding.

A module that sets ``tile_rows`` (bounded memory) never caches; a module with float zero points
(``zero_points`` buffer, e.g. HQQ's), a code-book format (NF4 / FP4) or any grid the fused kernels cannot
express uses the cached weight (the fused kernels could take real zeros, ``SZ = scale * (8 - zero)``,
but that path is not tested yet).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ptq.kernels.weight_only_matmul import (
    choose_weight_backend, group_order, int4pack_matmul, int4pack_weight, int8pack_matmul, int8pack_weight,
)
from ptq.modules.derived import derived


def _sources(module: nn.Module) -> tuple[torch.Tensor | None, ...]:
    return tuple(module._buffers.values())


def _derived_in(module: nn.Module, name: str, dtype: torch.dtype, build):
    """``derived(module, name, buffers, build)`` for activations of ``dtype``: one cache per name, rebuilt
    (the old one dropped) when the dtype changes, so a model moved to another dtype keeps no stale copy."""
    cache = module.__dict__.get(f"_derived_{name}")
    if cache is not None and cache[1] is not None and cache[1][-1] != dtype:
        del module.__dict__[f"_derived_{name}"]
    return derived(module, name, _sources(module), lambda: (*build(), dtype))


def resolve_backend(module: nn.Module, x2: torch.Tensor) -> str:
    """The backend ``module`` uses for the 2-D input ``x2`` (``module.backend`` or ``"auto"``)."""
    spec = module.spec
    requested = getattr(module, "backend", "auto")
    if module.tile_rows and module.tile_rows < module.out_features and requested == "auto":
        return "dequant"
    backend = choose_weight_backend(spec.bits, spec.granularity, spec.group_size, module.in_features,
                                    x2.shape[0], x2.dtype, requested)
    if backend in ("int4pack", "int8pack") and (
        getattr(module, "zero_points", None) is not None or getattr(spec, "format", "int") != "int"
        or x2.device.type != "cpu"
    ):
        return "cached"
    return backend


def _int4(module: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor | None, ...]:
    """``(packed, SZ, perm, dtype)`` with ``SZ`` in ``dtype``; ``packed`` is ``None`` when an act-order
    ``g_idx`` has no consecutive order (groups of unequal sizes)."""
    def build():
        g = module.spec.group_size
        codes, scale, zero = module.codes(), module.scales.float(), module.zeros()
        perm = None
        if module.g_idx is not None:
            perm = group_order(module.g_idx, g)
            if perm is None:
                return None, None, None
            codes = codes.index_select(1, perm)
        packed, SZ = int4pack_weight(codes, scale, zero, g)
        return packed, SZ.to(dtype), perm
    return _derived_in(module, "int4pack", dtype, build)


def _int8(module: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor | None, ...]:
    """``(Q8, s, c, dtype)`` with ``s``, ``c`` in ``dtype`` (:func:`int8pack_weight`)."""
    def build():
        q8, s, c = int8pack_weight(module.codes(), module.scales.float(), module.zeros())
        return q8, s.to(dtype), None if c is None else c.to(dtype)
    return _derived_in(module, "int8pack", dtype, build)


def cached_weight(module: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """``module.dequantize_weight()`` in ``dtype``, built once and reused until a buffer changes."""
    return _derived_in(module, "weight", dtype, lambda: (module.dequantize_weight().to(dtype),))[0]


def weight_only_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x @ W^T + b`` for a ``QuantLinear`` through the backend :func:`resolve_backend` picks."""
    bias = module.bias.to(x.dtype) if module.bias is not None else None
    x2 = x.reshape(-1, module.in_features)
    backend = resolve_backend(module, x2)
    y = None
    if backend == "int4pack":
        packed, SZ, perm, _ = _int4(module, x.dtype)
        if packed is not None:
            y = int4pack_matmul(x2, packed, SZ, module.spec.group_size, perm)
    elif backend == "int8pack":
        q8, s, c, _ = _int8(module, x.dtype)
        y = int8pack_matmul(x2, q8, s, c)
    elif backend == "dequant":
        return dequant_forward(module, x, bias)
    if y is None:  # "cached", or an act-order map the int4 kernel cannot take
        return F.linear(x, cached_weight(module, x.dtype), bias)
    if bias is not None:
        y = y.add_(bias)
    return y.reshape(*x.shape[:-1], module.out_features)


def dequant_forward(module: nn.Module, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The reference: dequantize on this call (whole, or ``tile_rows`` output rows at a time)."""
    if not module.tile_rows or module.tile_rows >= module.out_features:
        return F.linear(x, module.dequantize_weight().to(x.dtype), bias)
    outs = []
    for r0 in range(0, module.out_features, module.tile_rows):
        rows = slice(r0, min(r0 + module.tile_rows, module.out_features))
        outs.append(F.linear(x, module.dequantize_weight(rows).to(x.dtype), None if bias is None else bias[rows]))
    return torch.cat(outs, dim=-1)
