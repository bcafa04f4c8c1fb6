"""Quantization methods of ``ptq quantize --method``: CLI flags -> a recipe.

Each method module defines ``NAME``, ``add_arguments(group)`` (its own flags, if any) and
``build_recipe(args) -> Recipe``. Later methods register here with one line.
"""
from __future__ import annotations

from types import ModuleType

from scripts.methods import gptq, rtn

METHODS: dict[str, ModuleType] = {m.NAME: m for m in (rtn, gptq)}
