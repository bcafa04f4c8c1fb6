"""Linear4bit (NF4 / FP4): packing from the fake-quantized layer, checkpoints, footprint, the RTN step and CLI."""
from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from ptq import QuantSpec
from ptq.algorithms import rtn
from ptq.modules import Linear4bit


@pytest.mark.parametrize("fmt, dq", [("nf4", False), ("nf4", True), ("fp4", True)])
def test_from_float_reproduces_the_weight(fmt, dq):
    torch.manual_seed(0)
    lin = nn.Linear(128, 24)
    spec = QuantSpec(format=fmt, double_quant=dq)
    res = rtn(lin.weight.detach(), spec)
    lin.weight.data = res.weight.clone()
    qm = Linear4bit.from_float(lin, spec, res.scale)
    assert torch.equal(qm.dequantize_weight(), res.weight)
    x = torch.randn(3, 128)
    torch.testing.assert_close(qm(x), lin(x), rtol=0, atol=0)
    per_weight = 8 * sum(b.numel() * b.element_size() for n, b in qm.named_buffers() if n != "bias") / (128 * 24)
    # 48 blocks: one byte each, one float32 absmax2 (48 <= 256 blocks) and one float32 offset
    assert per_weight == pytest.approx((4 + 8 / 64 + (32 + 32) / (24 * 128)) if dq else 4.5)
    assert qm.to(torch.bfloat16).used_absmax().dtype == torch.float32
    lin.weight.data[0, 0] += 0.01
    with pytest.raises(ValueError, match="not on its NF4/FP4 grid"):
        Linear4bit.from_float(lin, spec, res.scale)


def test_footprint_counts_4_127_bits():
    from evaluations.footprint import packed_weight_bytes

    spec = QuantSpec(format="nf4", double_quant=True)
    out, n = 4096, 4096
    bits = 8 * packed_weight_bytes(out, n, spec) / (out * n)
    assert bits == pytest.approx(4 + 8 / 64 + 32 / (64 * 256) + 32 / (out * n), abs=1e-9)  # + the offset
    assert round(bits, 3) == 4.127
    assert 8 * packed_weight_bytes(out, n, QuantSpec(format="nf4")) / (out * n) == 4.5
    hqq = QuantSpec(bits=4, granularity="group", group_size=64, zero_dtype="float16")
    assert 8 * packed_weight_bytes(out, n, hqq) / (out * n) == 4.5  # float16 scale and zero per group


def test_rtn_step_checkpoint_round_trip(tmp_path, tiny_model, tiny_segments):
    from calibration.recipes import Recipe
    from calibration.runner import quantize_model
    from ptq.checkpoint import load_quantized, save_quantized

    model = tiny_model("llama")
    recipe = Recipe.from_list([{"step": "rtn", "weight_format": "nf4", "double_quant": True}])
    assert recipe.to_list()[0]["weight_format"] == "nf4"
    result = quantize_model(model, recipe, tiny_segments(), progress=False)
    ids = tiny_segments(n=2)
    with torch.no_grad():
        ref = model(ids).logits
    save_quantized(model, tmp_path / "q", result.records)
    loaded, _ = load_quantized(tmp_path / "q")
    kinds = {type(m).__name__ for m in loaded.modules()}
    assert "Linear4bit" in kinds and "QuantLinear" not in kinds
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, ref, rtol=0, atol=1e-5)


def _args(*argv: str) -> argparse.Namespace:
    from scripts.commands.quantize import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["m", "--output", "o", *argv])


def test_cli_flags():
    from scripts.commands.quantize import build_recipe
    from scripts.errors import UsageError

    (step,) = build_recipe(_args("--weight-format", "nf4", "--double-quant")).steps
    assert step.spec == QuantSpec(format="nf4", group_size=64, double_quant=True, scale_dtype="float16")
    (step,) = build_recipe(_args("--weight-format", "fp4", "--group-size", "32")).steps
    assert step.spec.describe() == "FP4 g32"
    with pytest.raises(UsageError, match="4-bit code book"):
        build_recipe(_args("--weight-format", "nf4", "--bits", "3"))
    with pytest.raises(UsageError, match="--double-quant quantizes the absmax"):
        build_recipe(_args("--double-quant"))
    with pytest.raises(UsageError, match="apply to --method rtn"):
        build_recipe(_args("--method", "gptq", "--weight-format", "nf4"))
    (hqq,) = build_recipe(_args("--qparams", "hqq", "--group-size", "64")).steps
    assert hqq.spec.zero_dtype == "float16" and hqq.to_dict()["qparams"] == "hqq"
