"""Recipe step ``awq``: scales folded without changing the float function, clipping, linking to the next step."""
import pytest
import torch

from calibration.models.blocks import find_decoder_blocks
from calibration.recipes import AWQStep, Recipe, RTNStep
from calibration.recipes.awq import inspected_module
from calibration.runner import quantize_model
from ptq.algorithms.smoothing_groups import SmoothGroup


def _logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits.float()


def _outliers(model, factor: float = 30.0) -> None:
    """Salient input channels, as in real LLMs: a few norm weights much larger than the rest."""
    _, blocks = find_decoder_blocks(model)
    for b in blocks:
        for name, m in b.named_modules():
            if name.endswith("layernorm") or name.endswith("layer_norm") or name.startswith("ln_"):
                m.weight.data[:3] *= factor


@pytest.mark.parametrize("arch", ["llama", "opt"])
def test_scaling_alone_keeps_the_float_function(tiny_model, tiny_segments, arch) -> None:
    model = tiny_model(arch)
    _outliers(model)
    tokens = tiny_segments(n=4)
    before = _logits(model, tokens)
    step = AWQStep(bits=4, granularity="group", group_size=32, symmetric=False, clip=False)
    res = quantize_model(model, Recipe([step]), tiny_segments(n=8, seed=1), progress=False)
    after = _logits(model, tokens)
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4)
    alphas = res.steps[0]["alphas"][0]
    assert any(a > 0 for a in alphas.values())  # with salient channels some group does scale
    rec = res.records[f"{find_decoder_blocks(model)[0]}.0.self_attn.q_proj"]
    assert rec.method == "awq" and rec.info["awq"]["source"].endswith(("layernorm", "layer_norm"))


def test_awq_then_rtn_beats_rtn_on_salient_channels(tiny_model, tiny_segments) -> None:
    tokens, calib = tiny_segments(n=4, seqlen=32, seed=5), tiny_segments(n=16, seqlen=32, seed=1)
    errors = {}
    for name, steps in (("rtn", []), ("awq", [AWQStep()])):
        model = tiny_model("llama", seed=3)
        _outliers(model)
        ref = _logits(model, tokens)
        recipe = Recipe([*steps, RTNStep(bits=3, granularity="group", group_size=32)])
        res = quantize_model(model, recipe, calib, progress=False)
        errors[name] = float((_logits(model, tokens) - ref).pow(2).mean())
        if name == "awq":
            assert res.steps[0]["spec"]["bits"] == 3  # the search simulated the RTN step's grid
            prefix = find_decoder_blocks(model)[0]
            rec = res.records[f"{prefix}.0.mlp.down_proj"]
            assert rec.method == "rtn" and "alpha" in rec.info["awq"] and rec.info["awq"]["clip"] is True
            assert res.records[f"{prefix}.0.self_attn.q_proj"].info["awq"]["clip"] is False
            assert "self_attn.o_proj" in res.steps[0]["unscaled"]  # GQA: v -> o has no fold
    assert errors["awq"] < errors["rtn"]


def test_clipping_clamps_the_weights(tiny_model, tiny_segments) -> None:
    model = tiny_model("llama")
    _, blocks = find_decoder_blocks(model)
    w = blocks[0].mlp.down_proj.weight.detach().clone()
    step = AWQStep(bits=2, granularity="channel", symmetric=False, clip=True)
    quantize_model(model, Recipe([step]), tiny_segments(n=8), progress=False)
    after = blocks[0].mlp.down_proj.weight.detach()
    assert not torch.equal(after, w)


def test_recipe_links_the_weight_format() -> None:
    rtn = RTNStep(bits=3, granularity="group", group_size=64)
    recipe = Recipe([AWQStep(), rtn])
    assert recipe.steps[0].spec == rtn.spec
    assert recipe.to_list()[0] == {"step": "awq"}
    back = Recipe.from_list(recipe.to_list())
    assert back.steps[0].spec == back.steps[1].spec
    own = Recipe([AWQStep(bits=4, granularity="channel", symmetric=True), rtn])
    assert own.steps[0].spec.bits == 4 and own.steps[0].spec.symmetric


def test_bad_configurations(tiny_model, tiny_segments) -> None:
    with pytest.raises(ValueError, match="needs a weight quantizer after it"):
        quantize_model(tiny_model("llama"), Recipe([AWQStep()]), tiny_segments(n=2), progress=False)
    with pytest.raises(ValueError, match="granularity, symmetric .* missing"):
        AWQStep(bits=4)
    with pytest.raises(ValueError, match="per-tensor"):
        Recipe([AWQStep(), RTNStep(bits=4, granularity="tensor")])
    with pytest.raises(ValueError, match="search_samples"):
        AWQStep(search_samples=-1)


def test_inspected_module() -> None:
    assert inspected_module(SmoothGroup("input_layernorm", "norm", ("self_attn.q_proj", "self_attn.k_proj"))) \
        == "self_attn"
    assert inspected_module(SmoothGroup("mlp.up_proj", "linear", ("mlp.down_proj",))) == "mlp.down_proj"
    assert inspected_module(SmoothGroup("ln", "norm", ("attn.q", "mlp.fc1"))) == ""


@pytest.mark.parametrize("then", ["rtn", "gptq"])
def test_awq_model_round_trips_through_ptq_and_gptq_formats(tiny_model, tiny_segments, tmp_path, then) -> None:
    from calibration.recipes import GPTQStep
    from ptq.checkpoint import export_gptq, load_quantized, save_quantized

    model = tiny_model("llama")
    _outliers(model)
    quantizer = (RTNStep(bits=4, granularity="group", group_size=32) if then == "rtn" else
                 GPTQStep(bits=4, granularity="group", group_size=32, act_order=True))
    res = quantize_model(model, Recipe([AWQStep(), quantizer]), tiny_segments(n=8), progress=False)
    assert all(r.method == then for r in res.records.values())
    tokens = tiny_segments(n=2, seed=9)
    ref = _logits(model, tokens)
    for name, writer in (("ptq", save_quantized), ("gptq", export_gptq)):
        out = writer(model, tmp_path / name, res.records)
        loaded, _ = load_quantized(out)
        torch.testing.assert_close(_logits(loaded, tokens), ref, rtol=1e-4, atol=1e-4)
