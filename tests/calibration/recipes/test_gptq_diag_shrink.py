"""GPTQStep(diag_shrink=...): the Hessian shrunk towards its diagonal before each layer's solve."""
from __future__ import annotations

import pytest
import torch

from calibration.models import find_linear_layers, linear_weight
from calibration.recipes import GPTQStep, Recipe
from calibration.runner import quantize_model


def _weights(model):
    return {n: linear_weight(m).clone() for n, m in find_linear_layers(model).items() if "lm_head" not in n}


def test_full_shrink_gives_round_to_nearest_and_half_lies_between(tiny_model, tiny_segments):
    segments = tiny_segments(n=4, seqlen=16)
    out = {}
    for name, steps in (("rtn", [{"step": "rtn", "bits": 3}]),
                        ("one", [{"step": "gptq", "bits": 3, "diag_shrink": 1.0}]),
                        ("half", [{"step": "gptq", "bits": 3, "diag_shrink": 0.5}]),
                        ("gptq", [{"step": "gptq", "bits": 3}])):
        model = tiny_model(seed=1)
        quantize_model(model, Recipe.from_list(steps), segments, progress=False)
        out[name] = _weights(model)
    for layer, W in out["rtn"].items():
        assert torch.equal(out["one"][layer], W), layer  # no error compensation left
    assert any(not torch.equal(out["half"][n], out["gptq"][n]) for n in out["gptq"])
    assert any(not torch.equal(out["half"][n], out["rtn"][n]) for n in out["rtn"])


def test_recipe_records_it_only_when_set():
    assert "diag_shrink" not in GPTQStep().to_dict()  # earlier results keep their keys
    assert GPTQStep(diag_shrink=0.5).to_dict()["diag_shrink"] == 0.5
    with pytest.raises(ValueError, match="diag_shrink must be a number from 0 to 1"):
        GPTQStep(diag_shrink=-1)
