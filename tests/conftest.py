"""Shared fixtures: tiny random models of each architecture, and the real SmolLM2-135M.

Tests that need the real model are marked ``slow`` (``make test-fast`` skips them).
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

TINY_ARCHS = ("llama", "opt", "gpt2", "qwen2", "mistral")


def make_tiny_model(arch: str = "llama", num_layers: int = 2, seed: int = 0, vocab_size: int = 128,
                    hidden: int = 64, intermediate: int = 128) -> nn.Module:
    """A random causal LM built from a ``transformers`` config (hidden 64, MLP 128, 4 heads)."""
    from transformers import (AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, OPTConfig,
                              Qwen2Config)

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, max_position_embeddings=256)
    if arch == "llama":
        cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=num_layers,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, **common)
    elif arch == "mistral":
        cfg = MistralConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=num_layers,
                            num_attention_heads=4, num_key_value_heads=2, sliding_window=None, **common)
    elif arch == "qwen2":
        cfg = Qwen2Config(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=num_layers,
                          num_attention_heads=4, num_key_value_heads=2, **common)
    elif arch == "opt":
        cfg = OPTConfig(hidden_size=hidden, ffn_dim=intermediate, num_hidden_layers=num_layers,
                        num_attention_heads=4, word_embed_proj_dim=hidden, **common)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_embd=hidden, n_inner=intermediate, n_layer=num_layers,
                         n_head=4, n_positions=256)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}")
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()


@pytest.fixture
def tiny_model() -> Callable[..., nn.Module]:
    """Factory: ``tiny_model(arch="llama", num_layers=2, seed=0)``."""
    return make_tiny_model


@pytest.fixture
def tiny_segments() -> Callable[..., torch.Tensor]:
    """Factory: ``tiny_segments(n=8, seqlen=16, vocab_size=128, seed=0)`` random token windows."""
    def make(n: int = 8, seqlen: int = 16, vocab_size: int = 128, seed: int = 0) -> torch.Tensor:
        return torch.randint(0, vocab_size, (n, seqlen), generator=torch.Generator().manual_seed(seed))
    return make


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The SmolLM2-135M tokenizer (from the cached HF folder of the built-in model)."""
    from transformers import AutoTokenizer

    from calibration.models.loading import resolve_source

    return AutoTokenizer.from_pretrained(str(resolve_source("smollm2-135m")))


@pytest.fixture(scope="session")
def smol_model():
    """``(model, tokenizer)`` of the real SmolLM2-135M in float32; tests using it are ``slow``."""
    from calibration.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tokenizer):
    """A tiny random Llama with SmolLM2's tokenizer, saved as a local HF folder (CLI tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    path = tmp_path_factory.mktemp("model") / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def one_thread():
    """Tiny matrices: one intra-op thread (two threads on a loaded 2-core host cost ms per op)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def two_threads():
    """At least two intra-op threads (an OpenMP team has worker threads only then), restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(max(n, 2))
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _reference_cache_in_tmp(tmp_path_factory, monkeypatch):
    """Cached float reference logits (evaluations.reference_cache) go to a temporary folder, never ~/.cache."""
    monkeypatch.setenv("PTQ_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ptq-cache"))
