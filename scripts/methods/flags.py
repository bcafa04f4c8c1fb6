"""Command-line flags generated from a step's dataclass fields (:func:`calibration.recipes.step.option`).

The step is the single source of each argument's default, choices and validation; this module only
turns its fields into ``argparse`` arguments and the parsed flags back into the step. A user mistake the
step refuses is reported with the flag names (``search_metric`` -> ``--search-metric``).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any, TypeVar

from calibration.recipes.step import Step, cli_fields
from ptq.errors import PTQUserError
from scripts.errors import UsageError

S = TypeVar("S", bound=Step)
SHARED_WEIGHT_FLAGS = ("bits", "granularity", "group_size", "symmetric")  # added once by `ptq quantize`


def flag_of(f: dataclasses.Field) -> str:
    """The flag of a field: its own, else ``--name`` (``--no-name`` for a boolean that defaults to True)."""
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    return ("--no-" if f.default is True else "--") + f.name.replace("_", "-")


def dest_of(f: dataclasses.Field) -> str:
    return f.metadata.get("dest") or f.name


def add_step_arguments(group: argparse._ArgumentGroup, cls: type[Step], skip: tuple[str, ...] = ()) -> None:
    """One ``argparse`` argument per :func:`option` field of ``cls`` (except ``skip``)."""
    for f in cli_fields(cls):
        if f.name in skip:
            continue
        md = f.metadata
        kwargs: dict[str, Any] = {"dest": dest_of(f), "help": md["help"]}
        if isinstance(f.default, bool):
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["default"] = f.default
            kwargs["type"] = md.get("type") or (type(f.default) if f.default is not None else str)
            for key in ("choices", "metavar"):
                if md.get(key) is not None:
                    kwargs[key] = list(md[key]) if key == "choices" else md[key]
        group.add_argument(flag_of(f), **kwargs)


def flags_message(cls: type[Step], message: str) -> str:
    """``message`` with each CLI field name of ``cls`` replaced by its flag."""
    for f in sorted(cli_fields(cls), key=lambda f: -len(f.name)):
        message = re.sub(rf"(?<![\w-]){re.escape(f.name)}(?![\w-])", flag_of(f), message)
    return message


def step_from_args(cls: type[S], args: argparse.Namespace, **overrides: Any) -> S:
    """``cls`` built from the parsed flags of its :func:`option` fields (and ``overrides``)."""
    own = cli_fields(cls)
    kwargs = {f.name: getattr(args, dest_of(f)) for f in own if hasattr(args, dest_of(f))}
    shared = {f.name for f in dataclasses.fields(cls)} - {f.name for f in own}  # a field's own flag wins
    kwargs.update({k: getattr(args, k) for k in SHARED_WEIGHT_FLAGS if k in shared and hasattr(args, k)})
    kwargs.update(overrides)
    try:
        return cls(**kwargs)
    except PTQUserError as exc:
        raise UsageError(flags_message(cls, str(exc))) from exc


class StepMethod:
    """``ptq quantize --method NAME`` for a registered weight-only step with no method module of its own:
    the shared weight flags, the step's own :func:`option` flags, a one-step recipe."""

    def __init__(self, cls: type[Step]) -> None:
        self.cls, self.NAME = cls, cls.name

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        add_step_arguments(group, self.cls, skip=SHARED_WEIGHT_FLAGS)

    def build_recipe(self, args: argparse.Namespace):
        from calibration.recipes import Recipe
        from scripts.methods.w8a8 import act_flags

        flags = act_flags(args)
        if flags:
            raise PTQUserError(f"{', '.join(flags)} with --method {self.NAME}: it quantizes weights only; drop them")
        return Recipe([step_from_args(self.cls, args)])
