"""Perplexity: the papers' protocol checked against a direct computation, windows, bad input."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from evaluations import perplexity, perplexity_from_ids, windows


def reference_ppl(model, ids, seqlen, n):
    """Window by window, float64, exp(total NLL / predicted tokens)."""
    nll, count = 0.0, 0
    for i in range(n):
        x = ids[:, i * seqlen:(i + 1) * seqlen]
        with torch.no_grad():
            logits = model(x).logits[0, :-1].double()
        nll += float(F.cross_entropy(logits, x[0, 1:], reduction="sum"))
        count += seqlen - 1
    return math.exp(nll / count)


def test_matches_direct_computation_and_batches(tiny_model):
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (1, 16 * 7 + 5), generator=torch.Generator().manual_seed(0))
    r = perplexity_from_ids(model, ids, seqlen=16)
    assert r.windows == 7 and r.tokens == 7 * 15 and r.seqlen == r.stride == 16  # partial window dropped
    assert r.ppl == pytest.approx(reference_ppl(model, ids, 16, 7), rel=1e-5)
    assert perplexity_from_ids(model, ids, seqlen=16, batch_size=3).ppl == pytest.approx(r.ppl, rel=1e-5)
    assert r.ppl == pytest.approx(math.exp(r.nll))
    assert r.tokens_per_s > 0 and r.seconds > 0
    assert perplexity_from_ids(model, ids, seqlen=16, max_windows=2).windows == 2


def test_perfect_model_has_perplexity_one():
    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, use_cache=False):
            logits = torch.full((*input_ids.shape, 8), -1e4)
            nxt = (input_ids + 1) % 8  # the data is 0,1,2,...,7,0,1,...
            logits.scatter_(-1, nxt.unsqueeze(-1), 0.0)
            return type("Out", (), {"logits": logits})

    ids = (torch.arange(64) % 8).reshape(1, -1)
    assert perplexity_from_ids(Oracle(), ids, seqlen=8).ppl == pytest.approx(1.0)


def test_sliding_windows_score_each_token_once():
    spans = windows(40, seqlen=16, stride=8)
    assert spans == [(0, 1), (8, 16), (16, 24), (24, 32)]
    scored = sum(b + 16 - f for b, f in spans)
    assert scored == 39  # every token but the first, once
    assert windows(40, 16) == [(0, 1), (16, 17)]


def test_sliding_window_token_count(tiny_model):
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (1, 96), generator=torch.Generator().manual_seed(1))
    r = perplexity_from_ids(model, ids, seqlen=32, stride=8)
    assert r.stride == 8 and r.tokens == 96 - 1 - (96 - 32) % 8


@pytest.mark.parametrize("kwargs, message", [
    ({"seqlen": 1}, "seqlen must be at least 2"),
    ({"seqlen": 16, "stride": 0}, "stride must be between 1 and seqlen"),
    ({"seqlen": 16, "max_windows": 0}, "max_windows must be at least 1"),
    ({"seqlen": 1000}, "fewer than one window of 1000"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        windows(100, **kwargs)


def test_named_corpus_through_the_tokenizer(tmp_path, tiny_model, smol_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    text = tmp_path / "t.txt"
    text.write_text(" ".join(f"word{i % 50}" for i in range(3000)))
    r = perplexity(model.eval(), smol_tokenizer, str(text), split="test", seqlen=64, max_windows=3)
    assert r.windows == 3 and 1 < r.ppl < 2 * len(smol_tokenizer)
