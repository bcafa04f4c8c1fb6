"""Tiny random models, quantized in place with RTN / GPTQ, and a tiny offline tokenizer."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast
from transformers.pytorch_utils import Conv1D

from ptq import QuantSpec
from ptq.algorithms import gptq, rtn
from ptq.modules.quant_linear import weight_2d

VOCAB = 96


def make_model(arch: str = "llama", seed: int = 0, num_layers: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                          max_position_embeddings=64)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=num_layers, n_head=4, n_positions=64)
    else:
        raise ValueError(arch)
    return AutoModelForCausalLM.from_config(cfg).eval()


def block_linears(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, Conv1D)) and (".layers." in n or ".h." in n)}


class Record:
    """Stands in for calibration.runner.LayerRecord."""

    def __init__(self, method, spec, scale, zero, g_idx=None):
        self.method, self.spec, self.scale, self.zero, self.g_idx = method, spec, scale, zero, g_idx


def quantize_tiny(model: nn.Module, spec: QuantSpec | Callable[[str], QuantSpec | None], method: str = "rtn",
                  act_order: bool = False, seed: int = 0) -> dict[str, Record]:
    """Fake-quantize the block linears in place (``spec(name) is None``: left in float)."""
    gen = torch.Generator().manual_seed(seed)
    records = {}
    for name, m in block_linears(model).items():
        s = spec(name) if callable(spec) else spec
        if s is None:
            continue
        W = weight_2d(m).detach().float()
        if method == "gptq":
            X = torch.randn(128, W.shape[1], generator=gen) * torch.linspace(0.2, 2.0, W.shape[1])
            res = gptq(W, 2 * X.t() @ X / 128, s, act_order=act_order)
        else:
            res = rtn(W, s)
        weight_2d(m).data.copy_(res.weight)
        records[name] = Record(method, s, res.scale, res.zero, res.g_idx)
    return records


def make_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(VOCAB - 1)} | {"[UNK]": VOCAB - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def logits(model: nn.Module, seed: int = 1) -> torch.Tensor:
    ids = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: one intra-op thread (a busy shared machine makes 2 threads ~100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


def make_bpe_tokenizer(vocab_size: int = VOCAB) -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE (gpt2-style) tokenizer: special tokens, the 256 byte symbols, a few merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("o", "n")]
    tokens = specials + alphabet + [a + b for a, b in merges]
    vocab = {t: i for i, t in enumerate(tokens[:vocab_size])}
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", additional_special_tokens=specials)


@pytest.fixture
def bpe_tokenizer() -> PreTrainedTokenizerFast:
    return make_bpe_tokenizer(3 + 256 + 6)
