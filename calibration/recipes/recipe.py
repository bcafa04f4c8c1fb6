"""A recipe: an ordered list of registered steps with their arguments.

From Python (``Recipe([RTNStep(...)])``), from a list of dicts
(``[{"step": "smoothquant", "alpha": 0.5}, {"step": "rtn", "bits": 8}]``), or from a
TOML / YAML file holding such a list under the key ``steps``::

    [[steps]]
    step = "rtn"
    bits = 4
    granularity = "group"
    group_size = 64
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibration.recipes.step import Step, make_step
from calibration.config_files import read_structured_file


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
                raise ValueError(f"recipe entry {i} must be a table with a 'step' key, got {item!r}")
            args = {k: v for k, v in item.items() if k != "step"}
            steps.append(make_step(item["step"], **args))
        return cls(steps)

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        data = read_structured_file(path, "recipe file")
        items = data.get("steps") if isinstance(data, dict) else data
        if not isinstance(items, list) or not items:
            raise ValueError(f"recipe file {path} must hold a non-empty list of steps under 'steps'")
        return cls.from_list(items)

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    @property
    def needs_calibration_data(self) -> bool:
        return any(s.needs_calibration_data for s in self.steps)

    def describe(self) -> str:
        return " + ".join(s.name for s in self.steps)
