"""The runner on a model streamed from disk (one block loaded at a time, each written as a shard)
gives the checkpoint of the in-memory run, tensor for tensor, bit for bit."""
from __future__ import annotations

import json

import pytest
import torch

from calibration.models.streaming import StreamedModel
from calibration.recipes import Recipe
from calibration.runner import quantize_model
from calibration.runner.streaming import StreamingQuantizer
from ptq.checkpoint import load_quantized
from ptq.checkpoint.files import read_tensors
from ptq.checkpoint.save import save_quantized

RECIPES = ["gptq w4 g32 act-order", "rtn w4 g32", "smoothquant alpha=0.5 + w8a8", "awq + gptq w4 g32"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny random Llama (3 blocks, untied head) in two safetensors shards."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("stream") / "tiny"
    LlamaForCausalLM(cfg).save_pretrained(path, max_shard_size="300KB")
    assert len(set(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"].values())) == 2
    return path


@pytest.mark.parametrize("recipe", RECIPES)
def test_streamed_checkpoint_equals_in_memory(folder, tmp_path, recipe, one_thread):
    from transformers import AutoModelForCausalLM

    segments = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(1))
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    result = quantize_model(model, Recipe.parse(recipe), segments, batch_size=2, progress=False)
    save_quantized(model, tmp_path / "memory", result.records)

    streamed = StreamedModel.from_folder(folder)
    streamed.load_resident(head=False)
    (tmp_path / "streamed").mkdir()
    loader = StreamingQuantizer(streamed, tmp_path / "streamed")
    result2 = quantize_model(streamed.model, Recipe.parse(recipe), segments, batch_size=2, progress=False,
                             loader=loader)
    loader.finish(extra={"recipe": recipe})
    assert all(p.is_meta for b in streamed.blocks for p in b.parameters())  # every block was freed

    a, b = read_tensors(tmp_path / "memory"), read_tensors(tmp_path / "streamed")
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    config = lambda p: json.loads((p / "config.json").read_text())  # noqa: E731
    assert config(tmp_path / "memory") == config(tmp_path / "streamed")
    assert result.steps == result2.steps or recipe.startswith(("gptq", "awq"))  # GPTQ's timings differ
    assert [r.to_json() for r in result.records.values()] == [r.to_json() for r in result2.records.values()]
    assert len(list((tmp_path / "streamed").glob("model-*-of-00004.safetensors"))) == 4
    load_quantized(tmp_path / "streamed")  # the index is read by the ordinary loader


def test_the_loader_refuses_a_work_folder(folder, tmp_path):
    from calibration.runner.workdir import WorkFolder

    streamed = StreamedModel.from_folder(folder)
    with pytest.raises(ValueError, match="cannot be resumed"):
        quantize_model(streamed.model, Recipe.parse("rtn w4"), None, progress=False,
                       loader=StreamingQuantizer(streamed, tmp_path), work=WorkFolder(tmp_path / "w", "k"))
