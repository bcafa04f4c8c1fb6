"""The block-by-block runner: caught inputs reproduce the model, steps see each block once."""
from __future__ import annotations

import pytest
import torch

from calibration.models import find_decoder_blocks, find_linear_layers, linear_weight
from calibration.recipes import ActivationStatsStep, Recipe, RTNStep
from calibration.runner import catch_block_inputs, quantize_model, run_block
from ptq import QuantSpec
from ptq.algorithms import rtn

ARCHS = ["llama", "opt", "gpt2", "qwen2", "mistral"]


@pytest.mark.parametrize("arch", ARCHS)
def test_caught_inputs_replay_the_model(tiny_model, arch):
    model = tiny_model(arch, num_layers=3)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (5, 16), generator=torch.Generator().manual_seed(0))
    _, blocks = find_decoder_blocks(model)
    inputs = catch_block_inputs(model, blocks[0], ids, batch_size=2)
    assert len(inputs) == 3 and inputs.num_samples == 5
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
    for i, block in enumerate(blocks[:-1]):
        inputs = inputs.with_hidden(run_block(block, inputs))
        torch.testing.assert_close(torch.cat(inputs.hidden), hidden[i + 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_rtn_step_equals_rtn_on_each_layer(tiny_model, arch):
    model = tiny_model(arch)
    spec = QuantSpec(bits=4, granularity="group", group_size=32, scale_dtype="float16")  # the step's default
    prefix, blocks = find_decoder_blocks(model)
    expected = {}
    for i, block in enumerate(blocks):
        for name, layer in find_linear_layers(block).items():
            expected[f"{prefix}.{i}.{name}"] = rtn(linear_weight(layer).float(), spec).weight
    result = quantize_model(model, Recipe([RTNStep(bits=4, granularity="group", group_size=32)]), None, progress=False)
    assert set(result.records) == set(expected)
    for i, block in enumerate(blocks):
        for name, layer in find_linear_layers(block).items():
            torch.testing.assert_close(linear_weight(layer).float(), expected[f"{prefix}.{i}.{name}"], rtol=0, atol=0)


def test_lm_head_and_embeddings_stay_float(tiny_model):
    model = tiny_model("llama")
    head = model.lm_head.weight.detach().clone()
    emb = model.get_input_embeddings().weight.detach().clone()
    quantize_model(model, Recipe([RTNStep(bits=2)]), None, progress=False)
    assert torch.equal(model.lm_head.weight, head) and torch.equal(model.get_input_embeddings().weight, emb)


def test_calibration_step_sees_every_linear_of_every_block(tiny_model):
    model = tiny_model("gpt2", num_layers=2)
    ids = torch.randint(0, model.config.vocab_size, (4, 12), generator=torch.Generator().manual_seed(1))
    step = ActivationStatsStep(threshold=0.5)
    result = quantize_model(model, Recipe([step]), ids, batch_size=3, progress=False)
    assert len(step.summary) == 2 * 4  # c_attn, attn c_proj, c_fc, mlp c_proj per block
    s = step.summary["transformer.h.0.attn.c_attn"]
    assert s["channels"] == model.config.n_embd and s["max_abs"] > 0 and 0 <= s["outlier_fraction"] <= 1
    assert result.steps[0]["step"] == "activation-stats" and result.peak_rss_mb > 0


def test_needs_segments_when_a_step_calibrates(tiny_model):
    with pytest.raises(ValueError, match="needs calibration segments"):
        quantize_model(tiny_model("llama"), Recipe([ActivationStatsStep()]), None, progress=False)


def test_nan_activation_names_the_layer(tiny_model):
    model = tiny_model("llama", num_layers=1)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = float("nan")  # outside the blocks: only the activations carry it
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.q_proj.*NaN or inf"):
        quantize_model(model, Recipe([ActivationStatsStep()]), ids, progress=False)


def test_nan_weight_names_the_parameter(tiny_model):
    model = tiny_model("llama", num_layers=1)
    with torch.no_grad():
        model.model.layers[0].input_layernorm.weight[0] = float("nan")
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    with pytest.raises(ValueError, match=r"weight model\.layers\.0\.input_layernorm\.weight contains NaN or inf"):
        quantize_model(model, Recipe([ActivationStatsStep()]), ids, progress=False)
