"""The ``llm-int8`` step through the runner: dynamic / static, records, checkpoint round trip."""
from __future__ import annotations

import math

import pytest
import torch

from calibration.recipes import Recipe
from calibration.runner import quantize_model
from ptq.checkpoint import load_quantized, save_quantized
from ptq.modules.llm_int8_linear import Int8OutlierLinear


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_every_block_linear_swapped_and_close_to_float(tiny_model, tiny_segments, arch, mode):
    model = tiny_model(arch)
    x = tiny_segments(2, 16, seed=1)
    ref = model(x).logits
    recipe = Recipe.from_list([{"step": "llm-int8", "mode": mode, "threshold": 2.0}])
    assert recipe.needs_calibration_data == (mode == "static")
    res = quantize_model(model, recipe, tiny_segments() if mode == "static" else None, progress=False)
    swapped = [m for m in model.modules() if isinstance(m, Int8OutlierLinear)]
    assert len(swapped) == len(res.records) > 0
    if mode == "static":
        rec = next(iter(res.records.values()))
        assert 0 <= rec.info["float_fraction"] <= 1 and rec.info["float_columns"] >= 0
    out = model(x).logits
    assert float((out - ref).norm() / ref.norm()) < 0.05


def test_vectorwise_baseline_and_bad_threshold(tiny_model):
    model = tiny_model("llama")
    quantize_model(model, Recipe.from_list([{"step": "llm-int8", "threshold": math.inf}]), None, progress=False)
    assert all(m.threshold == math.inf for m in model.modules() if isinstance(m, Int8OutlierLinear))
    with pytest.raises(ValueError, match="threshold must be positive"):
        Recipe.from_list([{"step": "llm-int8", "threshold": 0}])
    with pytest.raises(ValueError, match="mode must be one of dynamic, static"):
        Recipe.from_list([{"step": "llm-int8", "mode": "often"}])
    with pytest.raises(ValueError, match="zero_point quantizes rows"):
        Recipe.from_list([{"step": "llm-int8", "zero_point": True, "granularity": "tensor"}])


@pytest.mark.parametrize("zero_point", [False, True])
def test_checkpoint_round_trip(tiny_model, tiny_segments, tmp_path, zero_point):
    model = tiny_model("llama")
    step = {"step": "llm-int8", "mode": "static", "threshold": 3.0, "zero_point": zero_point}
    res = quantize_model(model, Recipe.from_list([step]), tiny_segments(), progress=False)
    assert all(m.zero_point == zero_point for m in model.modules() if isinstance(m, Int8OutlierLinear))
    assert ("zero_point" in res.steps[0]) == zero_point  # left out of the recipe at its default
    save_quantized(model, tmp_path / "ck", res.records)
    loaded, _ = load_quantized(tmp_path / "ck")
    x = tiny_segments(2, 16, seed=3)
    torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    assert sum(isinstance(m, Int8OutlierLinear) for m in loaded.modules()) == len(res.records)
