"""Recipe steps: the lifecycle every algorithm follows, and the registry of steps by name.

A step is a small dataclass of its arguments with three phases (llm-compressor's
initialise / calibrate / finish): ``initialize(model)`` once, ``process_block(ctx)`` for
each decoder block in order (observe statistics through ``ctx.observe_inputs`` and change
the block's layers), and ``finalize(model)`` once, returning what goes into ``ptq.json``.

A step's dataclass fields are the single source of its defaults and its validation
(``__post_init__``); a field declared with :func:`option` also carries its help text, flag name
and choices, from which ``ptq quantize`` generates its flags (``scripts/methods/flags.py``).
A step registered with ``weight_only=True`` is offered by ``ptq quantize --method`` with no
further edit, and its records are packed like RTN's and GPTQ's (``scale``, ``zero``, ``spec``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

from torch import nn

from calibration.runner.context import BlockContext
from ptq.errors import PTQUserError
from ptq.modules.swap import register_weight_only_method
from ptq.spec import QuantSpec

STEPS: dict[str, type["Step"]] = {}


def register_step(name: str, weight_only: bool = False):
    """Class decorator registering a :class:`Step` under ``name``.

    ``weight_only``: the step writes weight-only grids (records with ``spec``, ``scale``, ``zero`` under
    method ``name``): it becomes a ``ptq quantize --method`` and its layers pack into ``QuantLinear``.
    """

    def deco(cls: type["Step"]) -> type["Step"]:
        cls.name = name
        cls.weight_only = weight_only
        STEPS[name] = cls
        if weight_only:
            register_weight_only_method(name)
        return cls

    return deco


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None, dest: str | None = None,
           choices: Any = None, type: Callable[[str], Any] | None = None, metavar: str | None = None,
           omit_default: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A step argument that is also a command-line flag: default, help text, flag name and choices in one place.

    ``flag`` defaults to ``--field-name`` (a ``True`` boolean: ``--no-field-name``); ``dest`` to the field
    name (give one when the flag name is not the field's, e.g. ``--int8-granularity``); ``type`` to the
    default's type; ``help`` may use ``%(default)s``. ``omit_default``: see :meth:`Step.to_dict`.
    """
    metadata = {"help": help, "flag": flag, "dest": dest, "choices": choices, "type": type, "metavar": metavar,
                "omit_default": omit_default}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(cls: type["Step"]) -> list[dataclasses.Field]:
    """The fields of a step class declared with :func:`option` (its command-line flags), in order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("help")]


@dataclasses.dataclass
class Step:
    """Base class of recipe steps (subclasses are dataclasses of their arguments)."""

    name: ClassVar[str] = "step"
    needs_calibration_data: ClassVar[bool] = True
    #: attributes (JSON-able) that carry what ``finalize`` reports across blocks, saved after every block
    #: so that an interrupted run resumes (:mod:`calibration.runner.workdir`); ``None`` on a step that
    #: overrides ``finalize`` means it has not declared them, and such a run restarts from block 0.
    resume_attrs: ClassVar[tuple[str, ...] | None] = None
    weight_only: ClassVar[bool] = False

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

    def resume_state(self) -> dict[str, Any] | None:
        """What this step must get back to resume after a finished block (``None``: it cannot resume)."""
        if self.resume_attrs is None:
            return {} if type(self).finalize is Step.finalize else None
        return {a: getattr(self, a) for a in self.resume_attrs}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`resume_state` returned (after ``initialize``, before the next block)."""
        for attr, value in state.items():
            setattr(self, attr, value)

    def to_dict(self) -> dict[str, Any]:
        """``{"step": name, field: value, ...}``; a field declared with ``metadata={"omit_default": True}``
        is left out at its default value (an option added later keeps the older recipes' spelling,
        and so their results-store keys)."""
        return {"step": self.name, **{f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                                      if not (f.metadata.get("omit_default") and getattr(self, f.name) == f.default)}}


@dataclasses.dataclass
class WeightStep(Step):
    """A step that puts weights on a grid: the :class:`ptq.QuantSpec` fields, built into ``self.spec``."""

    bits: int = 4
    granularity: str = "channel"
    group_size: int | None = None
    symmetric: bool = False
    include_zero: bool = True
    scale_dtype: str = "float16"

    def __post_init__(self) -> None:
        self.spec = QuantSpec(bits=self.bits, symmetric=self.symmetric, granularity=self.granularity,
                              group_size=self.group_size, include_zero=self.include_zero,
                              scale_dtype=self.scale_dtype)

    def initialize(self, model: nn.Module) -> None:
        check_spec_fits(model, self.spec)  # group_size must divide every block linear's in_features


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
        raise PTQUserError(f"unknown recipe step {name!r}; known steps: {', '.join(sorted(STEPS))}")
    cls = STEPS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise PTQUserError(
            f"recipe step {name!r} has no argument(s) {', '.join(unknown)}; "
            f"its arguments: {', '.join(sorted(fields))}"
        )
    return cls(**kwargs)
