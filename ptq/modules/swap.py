"""Swap float layers for quantized modules and back, through a registry of module kinds.

As in optimum-quanto, each quantized module class is registered under a *kind* with the
float classes it replaces. A registered class provides

* ``kind`` (class attribute) and ``from_float(module, ...)``;
* ``quant_config() -> dict``: a JSON description (with ``"kind"``) that, together with the
  float layer it replaces, is enough to rebuild it empty;
* ``from_config(float_module, config, dtype) -> module``: that empty skeleton, on the meta
  device (checkpoint loading fills it with ``load_state_dict(..., assign=True)``);
* ``to_float() -> nn.Module``.

Only the named layers are replaced; the rest of the model is not touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol

import torch
from torch import nn

from ptq.layers import LINEAR_TYPES
from ptq.modules.linear4bit import Linear4bit
from ptq.modules.quant_linear import QuantLinear

#: Record methods whose layers are weight-only grids that :class:`QuantLinear` stores.
WEIGHT_ONLY_METHODS = {"rtn", "gptq", "awq"}


def register_weight_only_method(name: str) -> None:
    """Declare that records of method ``name`` are weight-only grids (``spec``, ``scale``, ``zero``)."""
    WEIGHT_ONLY_METHODS.add(name)


class LayerQuantRecord(Protocol):
    """What swapping needs of a calibration record (``calibration.runner.LayerRecord``)."""

    spec: Any
    scale: torch.Tensor | None
    zero: torch.Tensor | None
    g_idx: torch.Tensor | None


@dataclass(frozen=True)
class QModuleEntry:
    """A registered quantized module class and the float classes it replaces."""

    kind: str
    cls: type[nn.Module]
    replaces: tuple[type, ...]


_REGISTRY: dict[str, QModuleEntry] = {}


def register_qmodule(kind: str, replaces: Iterable[type]):
    """Class decorator: register a quantized module class under ``kind``."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        for attr in ("from_config", "quant_config", "to_float"):
            if not hasattr(cls, attr):
                raise TypeError(f"{cls.__name__} cannot be registered: it has no {attr}()")
        cls.kind = kind  # type: ignore[attr-defined]
        _REGISTRY[kind] = QModuleEntry(kind, cls, tuple(replaces))
        return cls

    return decorate


register_qmodule("weight_only", LINEAR_TYPES)(QuantLinear)
register_qmodule("linear4bit", LINEAR_TYPES)(Linear4bit)


def qmodule_entry(kind: str) -> QModuleEntry:
    """The registry entry of ``kind``; ``ValueError`` naming the known kinds otherwise."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown quantized module kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def is_qmodule(module: nn.Module) -> bool:
    """True for an instance of any registered quantized module class."""
    return any(isinstance(module, e.cls) for e in _REGISTRY.values())


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at qualified ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def is_weight_only(record: Any) -> bool:
    """A record of a weight-only grid that :class:`QuantLinear` can store."""
    method = getattr(record, "method", "rtn")
    return (method in WEIGHT_ONLY_METHODS and getattr(record, "spec", None) is not None
            and getattr(record, "scale", None) is not None and getattr(record, "zero", None) is not None)


def from_float(module: nn.Module, record: LayerQuantRecord,
               scale_dtype: str | torch.dtype = "auto") -> QuantLinear | Linear4bit:
    """A :class:`QuantLinear` (a :class:`Linear4bit` for nf4 / fp4) for one fake-quantized float layer and its record."""
    entry = _REGISTRY["weight_only"]
    if not isinstance(module, entry.replaces):
        raise ValueError(f"cannot pack a {type(module).__name__}: QuantLinear replaces nn.Linear and Conv1D")
    assert record.scale is not None and record.zero is not None
    qm: QuantLinear | Linear4bit
    if getattr(record.spec, "codebook", False):
        qm = Linear4bit.from_float(module, record.spec, record.scale)
    else:
        qm = QuantLinear.from_float(module, record.spec, record.scale, record.zero, g_idx=record.g_idx,
                                    scale_dtype=scale_dtype)
    qm.method = getattr(record, "method", None)
    return qm


def quantized_modules(model: nn.Module, records: Mapping[str, Any] | None = None,
                      scale_dtype: str | torch.dtype = "auto") -> dict[str, nn.Module]:
    """The quantized module of every quantized layer, without changing ``model``.

    Layers already swapped (registered quantized classes) are returned as they are; float
    layers with a weight-only record are packed. A float layer whose record holds qparams of
    a method that has no packed module raises ``ValueError`` rather than being silently
    stored in float.
    """
    out: dict[str, nn.Module] = {n: m for n, m in model.named_modules() if n and is_qmodule(m)}
    for name, record in (records or {}).items():
        if name in out:
            continue
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"the model has no layer {name!r} (records belong to another model?)") from exc
        if is_weight_only(record):
            try:
                out[name] = from_float(module, record, scale_dtype=scale_dtype)
            except ValueError as exc:
                raise ValueError(f"layer {name}: {exc}") from exc
        elif getattr(record, "scale", None) is not None:
            raise ValueError(
                f"layer {name} was quantized with method {getattr(record, 'method', '?')!r}, which has no packed "
                f"module; weight-only methods are {', '.join(sorted(WEIGHT_ONLY_METHODS))}"
            )
    position = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return dict(sorted(out.items(), key=lambda kv: position.get(kv[0], -1)))


def quantize_modules(model: nn.Module, records: Mapping[str, Any],
                     scale_dtype: str | torch.dtype = "auto") -> list[str]:
    """Swap every weight-only-quantized float layer of ``model`` for a :class:`QuantLinear`, in place.

    Returns the qualified names swapped. The rest of the model is untouched.
    """
    swapped = []
    for name, qm in quantized_modules(model, records, scale_dtype=scale_dtype).items():
        if model.get_submodule(name) is not qm:
            set_submodule(model, name, qm)
            swapped.append(name)
    return swapped


def to_float(model: nn.Module) -> list[str]:
    """Replace every registered quantized module of ``model`` by its float equivalent, in place."""
    names = [n for n, m in model.named_modules() if n and is_qmodule(m)]
    for name in names:
        set_submodule(model, name, model.get_submodule(name).to_float())  # type: ignore[operator]
    return names
