"""The float row's evaluation makes the reference logits in the same pass: the same numbers, one pass."""
from __future__ import annotations

import dataclasses

import torch

from evaluations.reference import compute_reference, evaluate, evaluate_reference
from evaluations.reference_cache import evaluate_float, job_key, lookup_reference
from evaluations.windows import plan_windows


def _counting(model):
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    return calls


def test_one_pass_gives_the_two_pass_numbers_and_reference(tiny_model):
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (1, 16 * 5), generator=torch.Generator().manual_seed(0))
    plan = plan_windows(ids.numel(), seqlen=16)
    ref2 = compute_reference(model, ids, plan, topk=32)
    r2, kl2 = evaluate(model, ids, plan, ref2)
    r1, kl1, ref1 = evaluate_reference(model, ids, plan, topk=32)
    for a, b in ((ref1.logp, ref2.logp), (ref1.ids, ref2.ids), (ref1.log_rest, ref2.log_rest)):
        assert torch.equal(a, b)
    assert ref1.window_nll == ref2.window_nll and ref1.plan == ref2.plan
    assert dataclasses.replace(r1, seconds=0, tokens_per_s=0) == dataclasses.replace(r2, seconds=0, tokens_per_s=0)
    assert kl1 == kl2


def test_evaluate_float_caches_then_reads(tiny_model, tmp_path):
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (16 * 3,), generator=torch.Generator().manual_seed(1))
    job = ("random", "test", ids, plan_windows(ids.numel(), seqlen=16))
    calls = _counting(model)
    r1, kl1 = evaluate_float("tiny", model, job, 16, tmp_path)
    assert len(calls) == 3  # one pass over the 3 windows made both the numbers and the cache
    assert lookup_reference(job_key("tiny", job, 16), tmp_path) is not None
    r2, kl2 = evaluate_float("tiny", model, job, 16, tmp_path)
    assert len(calls) == 6 and r1.ppl == r2.ppl and kl1 == kl2  # the cached reference: same numbers
