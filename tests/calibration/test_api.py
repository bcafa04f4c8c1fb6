"""``oneshot``: any recipe form, packed in place, saved in either format; user mistakes are PTQUserError."""
from __future__ import annotations

import pytest
import torch

from calibration import oneshot
from calibration.recipes import GPTQStep, Recipe, RTNStep
from calibration.recipes.recipe import as_recipe
from ptq.checkpoint import load_quantized
from ptq.errors import PTQUserError
from ptq.modules import QuantLinear


@pytest.mark.parametrize("form", [
    "rtn w4 g32 sym",
    {"step": "rtn", "bits": 4, "granularity": "group", "group_size": 32, "symmetric": True},
    [{"step": "rtn", "bits": 4, "granularity": "group", "group_size": 32, "symmetric": True}],
    {"steps": [{"step": "rtn", "bits": 4, "granularity": "group", "group_size": 32, "symmetric": True}]},
    RTNStep(bits=4, granularity="group", group_size=32, symmetric=True),
    [RTNStep(bits=4, granularity="group", group_size=32, symmetric=True)],
])
def test_every_recipe_form_gives_the_same_recipe(form):
    assert as_recipe(form).to_list() == Recipe([RTNStep(bits=4, granularity="group", group_size=32,
                                                        symmetric=True)]).to_list()


def test_recipe_from_a_file_and_a_description_with_values(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[steps]]\nstep = "gptq"\nbits = 3\nact_order = true\ndamp = 0.05\n')
    assert as_recipe(path).to_list() == as_recipe("gptq w3 act-order damp=0.05").to_list()
    assert as_recipe(str(path)).to_list() == Recipe([GPTQStep(bits=3, act_order=True, damp=0.05)]).to_list()
    two = as_recipe("smoothquant alpha=auto + w8a8 act=static").to_list()
    assert [s["step"] for s in two] == ["smoothquant", "w8a8"] and two[0]["alpha"] == "auto"


@pytest.mark.parametrize("bad, message", [("gptq w4 +", "empty step"), ("nope w4", "unknown recipe step 'nope'"),
                                          ("rtn bogus=1", "has no argument"), (42, "cannot build a recipe")])
def test_bad_recipes_are_user_errors(bad, message):
    with pytest.raises(PTQUserError, match=message):
        as_recipe(bad)


def test_oneshot_packs_in_place_and_saves(tiny_model, tiny_segments, tmp_path):
    model = tiny_model()
    x = tiny_segments(2, 16)
    q = oneshot(model, "gptq w4 g32", dataset=tiny_segments(8, 16))
    assert q.model is model and sum(isinstance(m, QuantLinear) for m in model.modules()) == 2 * 7
    assert set(q.records) == {n for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    with torch.no_grad():
        expected = model(x).logits
    for fmt in ("ptq", "gptq", "compressed-tensors"):
        q.save(tmp_path / fmt, format=fmt)
    assert (tmp_path / "compressed-tensors" / "config.json").exists()
    loaded, _ = load_quantized(tmp_path / "ptq")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, expected)
    with pytest.raises(PTQUserError, match="unknown format"):
        q.save(tmp_path / "x", format="onnx")


def test_oneshot_user_mistakes(tiny_model):
    with pytest.raises(PTQUserError, match="needs calibration data"):
        oneshot(tiny_model(), "gptq w4")
    with pytest.raises(PTQUserError, match="tokenizer"):
        oneshot(tiny_model(), "gptq w4", dataset="web-ot")
    q = oneshot(tiny_model(), "rtn w8")  # min-max RTN needs no data
    assert len(q.records) == 2 * 7
