"""Quantization methods of ``ptq quantize --method``: CLI flags -> a recipe.

Each method module defines ``NAME``, ``add_arguments(group)`` (its own flags, if any) and
``build_recipe(args) -> Recipe``. Later methods register here with one line.
"""
from __future__ import annotations

from types import ModuleType

from scripts.methods import awq, gptq, llm_int8, rtn, smoothquant, w8a8

METHODS: dict[str, ModuleType] = {m.NAME: m for m in (rtn, gptq, smoothquant, w8a8, llm_int8, awq)}
