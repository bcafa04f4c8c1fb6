"""KL to the float model: top-k approximation vs exact, the cache, agreement, paired ratio."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from evaluations.kl import kl_exact, kl_topk, top1_agreement, topk_reference
from evaluations.reference import compute_reference, evaluate
from evaluations.reference_cache import cache_key, cached_reference, load_reference
from evaluations.windows import plan_windows


def perturbed(model, scale=0.05, seed=1):
    """A copy of ``model`` with noise on every Linear weight (a stand-in for quantization)."""
    q = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.add_(scale * m.weight.abs().mean() * torch.randn(m.weight.shape, generator=g))
    return q


def test_topk_kl_is_a_lower_bound_with_the_tail_gap():
    g = torch.Generator().manual_seed(0)
    p_logits = 3 * torch.randn(50, 200, generator=g)
    q_logits = p_logits + 0.3 * torch.randn(50, 200, generator=g)
    exact = kl_exact(p_logits, q_logits)
    for k in (1, 8, 64, 200):
        approx = kl_topk(*topk_reference(p_logits, k), q_logits)
        assert (approx <= exact + 1e-5).all()
    full = kl_topk(*topk_reference(p_logits, 200), q_logits)
    assert torch.allclose(full, exact, atol=1e-5)  # k = V: the rest bucket is empty, exact
    # the gap is P_R * KL of the renormalised tails: check it directly for k = 8
    logp, ids, log_rest = topk_reference(p_logits, 8)
    lp, lq = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    mask = torch.ones_like(lp, dtype=torch.bool).scatter(-1, ids.long(), False)
    tail_p = (lp.masked_fill(~mask, -torch.inf) - log_rest[:, None]).exp()
    tail_lq = lq.masked_fill(~mask, -torch.inf) - torch.logsumexp(lq.masked_fill(~mask, -torch.inf), -1, keepdim=True)
    tail_kl = torch.where(tail_p > 0, tail_p * ((lp - log_rest[:, None]) - tail_lq), torch.zeros(())).sum(-1)
    gap = exact - kl_topk(logp, ids, log_rest, q_logits)
    assert torch.allclose(gap, log_rest.exp() * tail_kl, atol=1e-5)


def test_top1_agreement_and_identity():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    assert top1_agreement(torch.tensor([1, 1]), logits).tolist() == [True, False]
    assert kl_topk(*topk_reference(logits, 2), logits).abs().max() < 1e-6


def test_tiny_model_topk_close_to_exact_and_cache_roundtrip(tiny_model, tmp_path):
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.norm.weight.mul_(40.0)  # peaked next-token distributions, as a trained LM has
    q = perturbed(model)
    ids = torch.randint(0, 128, (1, 16 * 6), generator=torch.Generator().manual_seed(0))
    plan = plan_windows(ids.numel(), seqlen=16)
    ref = compute_reference(model, ids, plan, topk=32)
    r_k, kl_k = evaluate(q, ids, plan, ref)
    r_x, kl_x = evaluate(q, ids, plan, model)  # exact: the float model in memory
    assert r_k.ppl == pytest.approx(r_x.ppl)
    assert kl_x.topk is None and kl_k.topk == 32
    assert 0 < kl_k.kl_mean <= kl_x.kl_mean + 1e-6
    assert kl_k.ref_rest_mass < 0.05
    assert kl_x.kl_mean - kl_k.kl_mean < 0.05 * kl_x.kl_mean  # the tail of 128 - 32 tokens costs < 5 %
    assert kl_k.top1 == pytest.approx(kl_x.top1)
    assert kl_k.ppl_ratio == pytest.approx(r_k.ppl / kl_k.ref_ppl, rel=1e-6)
    assert kl_k.delta_ppl == pytest.approx(r_k.ppl - kl_k.ref_ppl, rel=1e-6)
    assert kl_k.kl_se is not None and kl_k.delta_ppl_se is not None
    assert kl_k.kl_median <= kl_k.kl_p99 <= kl_k.kl_max
    # the float model against its own cache: KL 0, agreement 1, ratio 1
    _, self_kl = evaluate(model, ids, plan, ref)
    assert abs(self_kl.kl_mean) < 1e-6 and self_kl.top1 == 1.0 and self_kl.ppl_ratio == pytest.approx(1.0)
    # the cache: computed once, then read back identical
    key = cache_key("tiny", "float32", "random", "test", ids, plan, 32)
    calls = []
    first, hit = cached_reference(key, lambda: calls.append(1) or ref, tmp_path)
    again, hit2 = cached_reference(key, lambda: calls.append(1) or ref, tmp_path)
    assert (hit, hit2, len(calls)) == (False, True, 1)
    assert torch.equal(again.logp, ref.logp) and torch.equal(again.ids, ref.ids) and again.plan == ref.plan
    _, kl_again = evaluate(q, ids, plan, load_reference(tmp_path / f"{key}.safetensors"))
    assert kl_again.kl_mean == pytest.approx(kl_k.kl_mean)
    # another window set is another key, and the cache refuses to score other windows
    other = plan_windows(ids.numel(), seqlen=16, max_windows=3, window_seed=1)
    assert cache_key("tiny", "float32", "random", "test", ids, other, 32) != key
    with pytest.raises(ValueError, match="other windows"):
        evaluate(q, ids, other, ref)


def test_ppl_ratio_se_is_paired():
    from evaluations.kl import summarize

    kl = [torch.zeros(10)] * 4
    top = [torch.ones(10, dtype=torch.bool)] * 4
    ref = [2.0, 3.0, 2.5, 3.5]  # windows differ a lot, the gap does not
    r = summarize(kl, top, [x + 0.1 for x in ref], ref, 8, 0.0)
    assert r.ppl_ratio == pytest.approx(math.exp(0.1)) and r.ppl_ratio_se == pytest.approx(0.0, abs=1e-12)
