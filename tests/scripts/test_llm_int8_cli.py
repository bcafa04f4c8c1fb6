"""``ptq quantize --method llm-int8`` flags: the recipe they build, and --zero-point's mistakes."""
from __future__ import annotations

import argparse

import pytest

from scripts.commands import quantize
from scripts.errors import UsageError


def _recipe(*argv: str) -> list[dict]:
    p = argparse.ArgumentParser()
    quantize.add_arguments(p)
    return quantize.build_recipe(p.parse_args(["m", "--output", "o", "--method", "llm-int8", *argv])).to_list()


def test_defaults_are_the_papers_llm_int8() -> None:
    (step,) = _recipe()
    assert step == {"step": "llm-int8", "threshold": 6.0, "mode": "dynamic", "granularity": "vector", "compute": "int"}


def test_zero_point_flag() -> None:
    (step,) = _recipe("--zero-point", "--mode", "static", "--threshold", "4")
    assert step["zero_point"] is True and step["mode"] == "static" and step["threshold"] == 4.0
    with pytest.raises(UsageError, match="--zero-point quantizes rows"):
        _recipe("--zero-point", "--int8-granularity", "tensor")
