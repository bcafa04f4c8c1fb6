"""Recipe steps: the lifecycle every algorithm follows, and the registry of steps by name.

A step is a small dataclass of its arguments with three phases (llm-compressor's
initialise / calibrate / finish): ``initialize(model)`` once, ``process_block(ctx)`` for
each decoder block in order (observe statistics through ``ctx.observe_inputs`` and change
the block's layers), and ``finalize(model)`` once, returning what goes into ``ptq.json``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from calibration.runner.context import BlockContext

STEPS: dict[str, type["Step"]] = {}


def register_step(name: str):
    """Class decorator registering a :class:`Step` under ``name``."""

    def deco(cls: type["Step"]) -> type["Step"]:
        cls.name = name
        STEPS[name] = cls
        return cls

    return deco


@dataclasses.dataclass
class Step:
    """Base class of recipe steps (subclasses are dataclasses of their arguments)."""

    name: ClassVar[str] = "step"
    needs_calibration_data: ClassVar[bool] = True

    def initialize(self, model: nn.Module) -> None:
        """Called once before the first block."""

    def link_next(self, following: "Step | None") -> None:
        """Called by :class:`Recipe` with the step after this one (``None``: the last); a step that
        depends on its successor overrides it (AWQ searches for the next step's weight format)."""

    def process_block(self, ctx: BlockContext) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def finalize(self, model: nn.Module) -> dict[str, Any]:
        """Called once after the last block; returns the step's summary for ``ptq.json``."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """``{"step": name, field: value, ...}``; a field declared with ``metadata={"omit_default": True}``
        is left out at its default value (an option added later keeps the older recipes' spelling,
        and so their results-store keys)."""
        return {"step": self.name, **{f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                                      if not (f.metadata.get("omit_default") and getattr(self, f.name) == f.default)}}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def check_spec_fits(model: nn.Module, spec) -> None:
    """Raise ``ValueError`` naming the first block linear whose input dimension ``spec`` cannot split."""
    from calibration.models.blocks import find_decoder_blocks, find_linear_layers, linear_weight

    prefix, blocks = find_decoder_blocks(model)
    for i, block in enumerate(blocks):
        for name, layer in find_linear_layers(block).items():
            spec.check_shape(linear_weight(layer).shape[1], name=f"the input dimension of {prefix}.{i}.{name}")


def make_step(name: str, **kwargs: Any) -> Step:
    """Build a registered step from its name and arguments (clear errors for typos)."""
    import calibration.recipes  # noqa: F401  (registers the built-in steps)

    if name not in STEPS:
        raise ValueError(f"unknown recipe step {name!r}; known steps: {', '.join(sorted(STEPS))}")
    cls = STEPS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(
            f"recipe step {name!r} has no argument(s) {', '.join(unknown)}; "
            f"its arguments: {', '.join(sorted(fields))}"
        )
    return cls(**kwargs)
