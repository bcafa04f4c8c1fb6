"""A recipe: an ordered list of registered steps with their arguments.

From Python (``Recipe([RTNStep(...)])``), from a list of dicts
(``[{"step": "smoothquant", "alpha": 0.5}, {"step": "rtn", "bits": 8}]``), or from a
TOML / YAML file holding such a list under the key ``steps``::

    [[steps]]
    step = "rtn"
    bits = 4
    granularity = "group"
    group_size = 64

or from a one-line description (:meth:`Recipe.parse`): steps joined by ``+``, each a step name
followed by words: ``wN`` (``bits=N``), ``gN`` (``granularity="group", group_size=N``), ``sym``
(``symmetric=True``), ``name=value`` (any argument, the value read as a Python literal, else a
string) or a bare argument name (``act-order`` = ``act_order=True``)::

    Recipe.parse("gptq w4 g64 act-order")
    Recipe.parse("smoothquant alpha=auto + w8a8 act=static")

:func:`as_recipe` accepts any of these (and step objects).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibration.recipes.step import Step, make_step
from calibration.config_files import read_structured_file
from ptq.errors import PTQUserError


@dataclass
class Recipe:
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        for step, following in zip(self.steps, [*self.steps[1:], None]):
            step.link_next(following)

    @classmethod
    def from_list(cls, items: list[dict[str, Any]]) -> "Recipe":
        steps = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "step" not in item:
                raise PTQUserError(f"recipe entry {i} must be a table with a 'step' key, got {item!r}")
            args = {k: v for k, v in item.items() if k != "step"}
            steps.append(make_step(item["step"], **args))
        return cls(steps)

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        data = read_structured_file(path, "recipe file")
        items = data.get("steps") if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            raise PTQUserError(f"recipe file {path} must hold a non-empty list of steps under 'steps'")
        return cls.from_list(items)

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        """A recipe from a one-line description (module docstring), e.g. ``"gptq w4 g64 act-order"``."""
        items = [_parse_step(part) for part in text.split("+")]
        if not items:
            raise PTQUserError(f"empty recipe {text!r}")
        return cls.from_list(items)

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    @property
    def needs_calibration_data(self) -> bool:
        return any(s.needs_calibration_data for s in self.steps)

    def describe(self) -> str:
        return " + ".join(s.name for s in self.steps)


_BITS, _GROUP = re.compile(r"w(\d+)"), re.compile(r"g(\d+)")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _parse_step(part: str) -> dict[str, Any]:
    """One ``+``-separated part of :meth:`Recipe.parse`: ``{"step": name, **arguments}``."""
    words = part.split()
    if not words:
        raise PTQUserError("a recipe description has an empty step (two '+' in a row, or one at an end)")
    item: dict[str, Any] = {"step": words[0]}
    for word in words[1:]:
        if "=" in word:
            key, _, value = word.partition("=")
            item[key.replace("-", "_")] = _literal(value)
        elif _BITS.fullmatch(word):
            item["bits"] = int(word[1:])
        elif _GROUP.fullmatch(word):
            item.update(granularity="group", group_size=int(word[1:]))
        elif word == "sym":
            item["symmetric"] = True
        else:
            item[word.replace("-", "_")] = True
    return item


def as_recipe(recipe: Any) -> Recipe:
    """A :class:`Recipe` from a recipe, a step, a list of steps / dicts, a dict (one step, or
    ``{"steps": [...]}``), a TOML / YAML / JSON file path, or a one-line description."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Step):
        return Recipe([recipe])
    if isinstance(recipe, Path) or (isinstance(recipe, str) and Path(recipe).suffix.lower() in
                                    (".toml", ".yaml", ".yml", ".json")):
        return Recipe.from_file(recipe)
    if isinstance(recipe, str):
        return Recipe.parse(recipe)
    if isinstance(recipe, dict):
        return Recipe.from_list(recipe["steps"] if "steps" in recipe else [recipe])
    if isinstance(recipe, (list, tuple)) and recipe:
        return Recipe([s if isinstance(s, Step) else Recipe.from_list([s]).steps[0] for s in recipe])
    raise PTQUserError(f"cannot build a recipe from {type(recipe).__name__} {recipe!r}: give a description "
                       "('gptq w4 g64 act-order'), a dict or list of dicts, a TOML/YAML file or step objects")
