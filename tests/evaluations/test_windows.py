"""Evaluation windows: BOS in front, the same scored tokens with or without it, seeded window samples, SEs."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from evaluations.perplexity import perplexity, perplexity_from_ids, resolve_bos
from evaluations.stats import mean_se, paired_ppl_delta, ppl_se, within_noise
from evaluations.windows import plan_windows, scored_rows, window_batch


class _AddsBos:
    """A tokenizer that puts its BOS (id 1) in front of every text; characters are ids 2.."""

    bos_token_id = 1
    name_or_path = "adds-bos"
    vocab_size = 128

    def __call__(self, texts, add_special_tokens=True, verbose=False):
        one = isinstance(texts, str)
        rows = [([1] if add_special_tokens else []) + [2 + ord(c) % 120 for c in t] for t in ([texts] if one else texts)]
        return {"input_ids": rows[0] if one else rows}


class _Recorder(torch.nn.Module):
    """Wraps a model and keeps every input_ids it was called with."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, input_ids, use_cache=False):
        self.calls.append(input_ids.clone())
        return self.model(input_ids=input_ids, use_cache=use_cache)


def test_bos_goes_in_front_of_every_window_and_scores_the_same_tokens(tiny_model, tmp_path):
    model = _Recorder(tiny_model("llama"))
    text = tmp_path / "t.txt"
    text.write_text(" ".join(f"w{i % 37}" for i in range(200)))
    tok = _AddsBos()
    assert resolve_bos(tok) == 1 and resolve_bos(tok, False) is None
    with_bos = perplexity(model, tok, str(text), seqlen=32, max_windows=3)
    calls = list(model.calls)
    model.calls.clear()
    raw = perplexity(model, tok, str(text), seqlen=32, max_windows=3, bos=False)
    assert with_bos.bos and not raw.bos
    assert [c.shape[1] for c in calls] == [33] * 3 and [c.shape[1] for c in model.calls] == [32] * 3
    for fed, plain in zip(calls, model.calls):
        assert fed[0, 0] == 1 and torch.equal(fed[0, 1:], plain[0])  # [BOS] + the same window
    assert with_bos.tokens == raw.tokens == 3 * 31 and with_bos.window_tokens == raw.window_tokens
    # the scored positions behind BOS predict the same targets: window tokens 1..31
    x = model.calls[0][0]
    with torch.no_grad():
        logits = model.model(torch.cat([torch.tensor([1]), x])[None]).logits[0]
    nll = float(F.cross_entropy(logits[1:32], x[1:]))
    assert with_bos.window_nll[0] == pytest.approx(nll, rel=1e-5)


def test_scored_rows_line_up_with_targets():
    ids = torch.arange(100)
    for bos in (None, 7):
        plan = plan_windows(100, seqlen=10, stride=5, bos=bos)
        for begin, first in plan.spans:
            batch = window_batch(ids, [(begin, first)], plan)[0]
            rows = scored_rows(begin, first, plan)
            predicted = batch[rows.start + 1:rows.stop + 1]  # row j predicts input j + 1
            assert torch.equal(predicted, ids[first:begin + 10])


def test_window_seed_samples_other_windows_in_order():
    a = plan_windows(1000, seqlen=10, max_windows=5, window_seed=0)
    b = plan_windows(1000, seqlen=10, max_windows=5, window_seed=1)
    assert a.spans == plan_windows(1000, seqlen=10, max_windows=5, window_seed=0).spans
    assert a.spans != b.spans and len(b.spans) == 5
    assert all(f == s + 1 and s % 10 == 0 for s, f in a.spans) and list(a.spans) == sorted(a.spans)
    assert plan_windows(1000, seqlen=10, max_windows=5).spans == tuple((10 * i, 10 * i + 1) for i in range(5))
    with pytest.raises(ValueError, match="cannot be combined with a stride"):
        plan_windows(1000, seqlen=10, stride=5, window_seed=0)


def test_standard_errors():
    m, se = mean_se([1.0, 3.0])
    assert m == 2.0 and se == pytest.approx(1.0)  # std 1.414 / sqrt 2
    assert mean_se([5.0])[1] is None
    m, _ = mean_se([1.0, 4.0], [3, 1])
    assert m == pytest.approx(7 / 4)
    ppl, se = ppl_se([2.0, 2.2], [10, 10])
    assert ppl == pytest.approx(math.exp(2.1)) and se == pytest.approx(ppl * 0.1)
    d, dse = paired_ppl_delta([2.1, 2.3], [2.0, 2.2], [10, 10])
    assert d == pytest.approx(math.exp(2.2) - math.exp(2.1))
    assert dse < se / 5  # the shared window effect cancels
    assert within_noise(0.1, 0.06) and not within_noise(0.2, 0.06) and within_noise(0.1, None) is None


def test_perplexity_result_carries_its_se(tiny_model):
    ids = torch.randint(0, 128, (1, 16 * 8), generator=torch.Generator().manual_seed(0))
    r = perplexity_from_ids(tiny_model("llama"), ids, seqlen=16)
    assert r.ppl_se > 0 and len(r.window_nll) == 8 and r.window_begins == [16 * i for i in range(8)]
    assert r.ppl == pytest.approx(math.exp(sum(r.window_nll) / 8))
