"""A model streamed from disk: shards read by name, blocks loaded and set back to meta, the resident
tensors (embedding mapped, head only when asked)."""
from __future__ import annotations

import json

import pytest
import torch

from calibration.models.streaming import ShardedTensors, StreamedModel
from ptq.errors import PTQUserError


@pytest.fixture
def sharded(tiny_model, tmp_path):
    """A tiny random Llama (3 blocks, untied head) saved as two safetensors shards with an index."""
    model = tiny_model("llama", num_layers=3)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    folder = tmp_path / "tiny"
    model.save_pretrained(folder, max_shard_size="300KB")
    files = set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values())
    assert len(files) == 2
    return model, folder


def test_blocks_load_exactly_and_go_back_to_meta(sharded):
    model, folder = sharded
    streamed = StreamedModel.from_folder(folder)
    assert all(p.is_meta for p in streamed.model.parameters())
    streamed.load_resident(head=False)
    assert streamed.model.lm_head.weight.is_meta  # the untied head waits until logits are needed
    assert torch.equal(streamed.model.model.embed_tokens.weight, model.model.embed_tokens.weight)
    block = streamed.load_block(1)
    for name, t in model.model.layers[1].state_dict().items():
        assert torch.equal(block.state_dict()[name], t), name
    assert all(p.is_meta for p in streamed.blocks[0].parameters())
    streamed.release_block(1)
    assert all(p.is_meta for p in block.parameters())
    streamed.load_resident(head=True)
    assert torch.equal(streamed.model.lm_head.weight, model.lm_head.weight)


def test_the_streamed_forward_equals_the_model(sharded):
    from calibration.runner import catch_block_inputs, run_block

    model, folder = sharded
    streamed = StreamedModel.from_folder(folder)
    streamed.load_resident()
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    inputs = catch_block_inputs(streamed.model, streamed.blocks[0], ids, batch_size=2)
    for i in range(3):
        inputs = inputs.with_hidden(run_block(streamed.load_block(i), inputs))
        streamed.release_block(i)
    with torch.no_grad():
        expected = model(ids, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(model.model.norm(inputs.hidden[0]), expected, rtol=0, atol=1e-5)  # eager vs sdpa


def test_a_float32_copy_of_a_bfloat16_checkpoint(sharded, tmp_path):
    model, folder = sharded
    half = tmp_path / "bf16"
    model.to(torch.bfloat16).save_pretrained(half)
    streamed = StreamedModel.from_folder(half, "float32")
    block = streamed.load_block(0)
    w = block.self_attn.q_proj.weight
    assert w.dtype == torch.float32 and torch.equal(w, model.model.layers[0].self_attn.q_proj.weight.float())


def test_bad_folders_are_one_clear_error(sharded, tmp_path):
    _, folder = sharded
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "../elsewhere.safetensors"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(PTQUserError, match="outside the folder"):
        ShardedTensors(bad)
    with pytest.raises(PTQUserError, match="no model.safetensors"):
        ShardedTensors(tmp_path)
    with pytest.raises(PTQUserError, match="lacks tensor"):
        ShardedTensors(folder).read(["model.layers.9.mlp.up_proj.weight"])
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])  # truncated
    with pytest.raises(PTQUserError, match="truncated or corrupt"):
        StreamedModel.from_folder(folder).load_resident()


def test_tensors_the_model_does_not_have_are_ignored_with_a_warning(sharded, tmp_path):
    from safetensors.torch import save_file

    model, _ = sharded
    folder = tmp_path / "extra"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # as older Llama checkpoints kept it
    save_file(state, str(folder.mkdir() or folder / "model.safetensors"))
    model.config.save_pretrained(folder)
    with pytest.warns(RuntimeWarning, match="ignoring 1 checkpoint tensor"):
        streamed = StreamedModel.from_folder(folder)
    assert torch.equal(streamed.load_block(0).mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)
