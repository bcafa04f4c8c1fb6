"""load_model: local folders, the built-in GGUF alias (cached), hub ids offline, bad input."""
from __future__ import annotations

import pytest
import torch

from calibration.models import ModelNotFoundError, find_decoder_blocks, find_linear_layers, load_model
from calibration.models import loading


@pytest.fixture
def tiny_dir(tmp_path, tiny_model, smol_tokenizer):
    model = tiny_model("llama")
    path = tmp_path / "tiny"
    model.save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path, model


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_local_folder_in_each_dtype(tiny_dir, dtype):
    path, ref = tiny_dir
    model, tok = load_model(path, dtype=dtype)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    ids = torch.tensor([[1, 2, 3, 4]])
    if dtype == "float32":
        torch.testing.assert_close(model(ids).logits, ref(ids).logits)
    assert tok.pad_token is not None


@pytest.mark.parametrize("arch", ["llama", "opt", "gpt2", "qwen2", "mistral"])
def test_blocks_and_linears_found_for_each_architecture(tiny_model, arch):
    model = tiny_model(arch, num_layers=3)
    prefix, blocks = find_decoder_blocks(model)
    assert len(blocks) == 3 and prefix.endswith(("layers", "h"))
    names = set(find_linear_layers(blocks[0]))
    assert len(names) >= (4 if arch == "gpt2" else 6)  # q/k/v/o (GPT-2: fused c_attn, c_proj) and the MLP
    assert not any("lm_head" in n or "embed" in n for n in names)


def test_builtin_alias_is_cached_and_keeps_tied_embeddings(monkeypatch):
    model, tok = load_model("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM" and len(find_decoder_blocks(model)[1]) == 30
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # The second load reads the cached HF folder, never the GGUF again.
    import transformers

    original = transformers.AutoModelForCausalLM.from_pretrained

    def no_gguf(*args, **kwargs):
        assert "gguf_file" not in kwargs, "GGUF parsed twice"
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_gguf)
    folder = loading._gguf_cache_folder(loading._smollm2_gguf())
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    again, _ = load_model("smollm2-135m")
    torch.testing.assert_close(again.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert tok("In the beginning")["input_ids"]


def test_gguf_cache_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PTQ_CACHE_DIR", str(tmp_path))
    assert loading.cache_dir() == tmp_path
    assert str(loading._gguf_cache_folder(loading._smollm2_gguf())).startswith(str(tmp_path))


def test_hub_id_offline_fails_fast_with_a_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loading_hub = pytest.importorskip("calibration.hub_access")
    loading_hub.hub_reachable.cache_clear()
    with pytest.raises(ModelNotFoundError, match="offline, use smollm2-135m"):
        load_model("nobody/no-such-model-xyz")
    loading_hub.hub_reachable.cache_clear()


@pytest.mark.parametrize("name, message", [
    ("missing.gguf", "GGUF file missing.gguf does not exist"),
    ("./no/such/folder", "is not a model folder or a .gguf file"),
])
def test_bad_names(name, message):
    with pytest.raises(ModelNotFoundError, match=message):
        load_model(name)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        load_model(tmp_path)


def test_bad_dtype_and_device(tiny_dir):
    path, _ = tiny_dir
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        load_model(path, dtype="int3")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            load_model(path, device="cuda")
    assert loading.resolve_device("auto").type in ("cpu", "cuda")
