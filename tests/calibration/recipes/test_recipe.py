"""Recipes from Python, lists, TOML and YAML; step registry errors."""
from __future__ import annotations

import pytest

from calibration.recipes import STEPS, Recipe, RTNStep, make_step


def test_builtin_steps_registered():
    assert {"rtn", "activation-stats"} <= set(STEPS)


def test_from_list_and_back():
    r = Recipe.from_list([{"step": "rtn", "bits": 3, "granularity": "group", "group_size": 64}])
    assert isinstance(r.steps[0], RTNStep) and r.steps[0].spec.group_size == 64
    assert r.to_list()[0]["step"] == "rtn" and r.to_list()[0]["bits"] == 3
    assert Recipe.from_list(r.to_list()).to_list() == r.to_list()
    assert not r.needs_calibration_data


def test_toml_and_yaml_files(tmp_path):
    t = tmp_path / "r.toml"
    t.write_text('[[steps]]\nstep = "rtn"\nbits = 8\n')
    y = tmp_path / "r.yaml"
    y.write_text("steps:\n  - step: rtn\n    bits: 8\n")
    assert Recipe.from_file(t).to_list() == Recipe.from_file(y).to_list()


@pytest.mark.parametrize(
    "items, message",
    [
        ([{"step": "nope"}], "unknown recipe step 'nope'; known steps:"),
        ([{"step": "rtn", "bitz": 4}], "has no argument\\(s\\) bitz"),
        ([{"bits": 4}], "must be a table with a 'step' key"),
        ([{"step": "rtn", "bits": 9}], "bits must be from 2 to 8"),
        ([{"step": "rtn", "observer": "foo"}], "unknown observer 'foo'"),
    ],
)
def test_bad_recipes(items, message):
    with pytest.raises(ValueError, match=message):
        Recipe.from_list(items)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Recipe.from_file(tmp_path / "missing.toml")
    bad = tmp_path / "r.toml"
    bad.write_text("steps = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        Recipe.from_file(bad)
    empty = tmp_path / "e.yaml"
    empty.write_text("steps: []\n")
    with pytest.raises(ValueError, match="non-empty list of steps"):
        Recipe.from_file(empty)


def test_make_step():
    assert make_step("rtn", bits=2).spec.maxq == 3


def test_group_size_that_does_not_divide_is_caught_before_any_work(tiny_model):
    from calibration.runner import quantize_model

    model = tiny_model("llama")  # hidden 64, MLP 128
    with pytest.raises(ValueError, match=r"group_size 48 does not divide the input dimension of model\.layers\.0\.self_attn\.q_proj \(64\)"):
        quantize_model(model, Recipe([RTNStep(bits=4, granularity="group", group_size=48)]), None, progress=False)
