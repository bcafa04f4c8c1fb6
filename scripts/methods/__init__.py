"""Quantization methods of ``ptq quantize --method``: CLI flags -> a recipe.

Each method module defines ``NAME``, ``add_arguments(group)`` (its own flags, if any) and
``build_recipe(args) -> Recipe``. A registered weight-only step with no module here
(``register_step(name, weight_only=True)``) is a method too, its flags generated from its fields
(:class:`scripts.methods.flags.StepMethod`).
"""
from __future__ import annotations

from typing import Any

from scripts.methods import awq, gptq, llm_int8, rtn, smoothquant, w8a8

METHODS: dict[str, Any] = {m.NAME: m for m in (rtn, gptq, smoothquant, w8a8, llm_int8, awq)}


def all_methods() -> dict[str, Any]:
    """The method modules above, then every other registered weight-only step."""
    from calibration.recipes import STEPS
    from scripts.methods.flags import StepMethod

    steps = {name: StepMethod(cls) for name, cls in STEPS.items() if cls.weight_only and name not in METHODS}
    return {**METHODS, **steps}
