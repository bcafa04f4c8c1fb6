"""Adding a weight-only method takes an algorithm, a step and a test: this file is all three.

The toy method rounds each weight row to a symmetric grid of its absmax (an algorithm on tensors), its
step is a dataclass whose fields declare its flags, and it registers as weight-only: ``ptq quantize
--method toy-round`` and its ``--toy-shrink`` flag, recipes, packing and the checkpoint take it with no
edit anywhere else.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from calibration.models.blocks import linear_weight, set_linear_weight
from calibration.recipes.step import WeightStep, option, register_step
from calibration.runner.context import BlockContext, LayerRecord
from ptq.errors import PTQUserError


def toy_round(W: torch.Tensor, bits: int, shrink: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The algorithm: ``scale = shrink * max|W_i| / (2^(bits-1) - 1)`` per row, ``Q = scale * clamp(round(W / scale))``."""
    qmax = 2 ** (bits - 1) - 1
    scale = (shrink * W.abs().amax(dim=1, keepdim=True) / qmax).clamp_min(1e-8)
    zero = torch.full_like(scale, float(qmax + 1))  # symmetric: zero = (maxq + 1) / 2 on the unsigned grid
    return scale * torch.clamp(torch.round(W / scale), -qmax - 1, qmax), scale, zero


@register_step("toy-round", weight_only=True)
@dataclass
class ToyRoundStep(WeightStep):
    """The step: its fields are its recipe arguments and its command-line flags (the grid's come from WeightStep)."""

    toy_shrink: float = option(1.0, "fraction of each row's absmax the grid spans (default %(default)s)")
    needs_calibration_data = False

    def __post_init__(self) -> None:
        self.symmetric, self.granularity = True, "channel"  # the toy's grid: symmetric per row
        super().__post_init__()
        if not 0 < self.toy_shrink <= 1:
            raise PTQUserError(f"toy_shrink must be in (0, 1], got {self.toy_shrink}")

    def process_block(self, ctx: BlockContext) -> None:
        for name, layer in ctx.linear_layers().items():
            Q, scale, zero = toy_round(linear_weight(layer).float(), self.bits, self.toy_shrink)
            set_linear_weight(layer, Q)
            ctx.record(name, LayerRecord(method=self.name, spec=self.spec, scale=scale, zero=zero))


def test_the_cli_and_recipes_pick_up_the_toy_method(tiny_model_dir, tmp_path, capsys):
    from calibration.recipes.recipe import as_recipe
    from ptq.checkpoint import load_quantized
    from scripts.cli import main

    assert as_recipe("toy-round w3 toy_shrink=0.9").to_list()[0]["toy_shrink"] == 0.9
    out = tmp_path / "toy"
    assert main(["quantize", str(tiny_model_dir), "--method", "toy-round", "--bits", "3", "--toy-shrink", "0.9",
                 "--output", str(out), "--quiet"]) == 0
    report = json.loads((out / "ptq.json").read_text())
    assert [(s["step"], s["bits"], s["toy_shrink"]) for s in report["recipe"]] == [("toy-round", 3, 0.9)]
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qc["method"], qc["bits"], qc["symmetric"]) == ("toy-round", 3, True)
    model, _ = load_quantized(out)
    assert sum(type(m).__name__ == "QuantLinear" for m in model.modules()) == 2 * 7
    assert main(["quantize", str(tiny_model_dir), "--method", "toy-round", "--toy-shrink", "2",
                 "--output", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "--toy-shrink must be in (0, 1], got 2.0" in capsys.readouterr().err


def test_the_toy_algorithm_is_a_grid():
    W = torch.randn(8, 16)
    Q, scale, _ = toy_round(W, 4, 1.0)
    codes = Q / scale
    assert torch.allclose(codes, codes.round(), atol=1e-5) and codes.abs().max() <= 8
    with pytest.raises(PTQUserError):
        ToyRoundStep(toy_shrink=0)
