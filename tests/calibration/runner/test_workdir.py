"""Resume from a work folder: a run stopped after block k and resumed gives the same model, records
and step summaries as an uninterrupted run, for steps that swap modules and steps with state."""
from __future__ import annotations

import json

import pytest
import torch

from calibration.recipes import Recipe
from calibration.runner import quantize_model
from calibration.runner.workdir import RunInterrupted, StaleWorkWarning, WorkFolder

RECIPES = {
    "gptq act-order g32": [{"step": "gptq", "bits": 4, "granularity": "group", "group_size": 32, "act_order": True}],
    "smoothquant auto + w8a8": [{"step": "smoothquant", "alpha": "auto", "search_samples": 4},
                                {"step": "w8a8", "act": "static"}],
    "smoothquant float-model + w8a8": [{"step": "smoothquant", "alpha": 0.5, "statistics": "float-model"},
                                       {"step": "w8a8", "act": "per-token"}],
    "llm-int8 static": [{"step": "llm-int8", "mode": "static"}],
    "activation-stats + rtn": [{"step": "activation-stats"}, {"step": "rtn", "bits": 3}],
}


def stop_after(k):
    def hook(next_block, num_blocks):
        if next_block == k:
            raise RunInterrupted(next_block, num_blocks)
    return hook


def run(tiny_model, steps, segments, work=None):
    model = tiny_model("llama", num_layers=3)
    return model, quantize_model(model, Recipe.from_list(steps), segments, batch_size=2, progress=False, work=work)


@pytest.mark.parametrize("name", RECIPES)
def test_resumed_run_equals_uninterrupted(name, tiny_model, tiny_segments, tmp_path, one_thread):
    steps, segments = RECIPES[name], tiny_segments(n=4, seqlen=16)
    ref_model, ref = run(tiny_model, steps, segments)
    with pytest.raises(RunInterrupted):
        run(tiny_model, steps, segments, WorkFolder(tmp_path / "w", "key", after_block=stop_after(2)))
    model, res = run(tiny_model, steps, segments, WorkFolder(tmp_path / "w", "key"))
    assert res.resumed_at == 2
    a, b = ref_model.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [type(m).__name__ for m in ref_model.modules()] == [type(m).__name__ for m in model.modules()]
    assert ref.records.keys() == res.records.keys()
    for q, r in ref.records.items():
        s = res.records[q]
        assert (r.method, r.spec, r.error) == (s.method, s.spec, s.error), q
        assert json.dumps(r.info, default=str, sort_keys=True) == json.dumps(s.info, default=str, sort_keys=True), q
        for t in ("scale", "zero", "g_idx"):
            x, y = getattr(r, t), getattr(s, t)
            assert (x is None and y is None) or torch.equal(x, y), (q, t)
    drop = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert [drop(s) for s in ref.steps] == [drop(s) for s in res.steps]


def test_another_key_starts_over(tiny_model, tiny_segments, tmp_path, one_thread):
    steps, segments = RECIPES["llm-int8 static"], tiny_segments(n=4, seqlen=16)
    with pytest.raises(RunInterrupted):
        run(tiny_model, steps, segments, WorkFolder(tmp_path / "w", "a", after_block=stop_after(1)))
    _, res = run(tiny_model, steps, segments, WorkFolder(tmp_path / "w", "b"))
    assert res.resumed_at == 0


def test_a_step_without_declared_state_is_not_resumed(tiny_model, tiny_segments, tmp_path, monkeypatch, one_thread):
    from calibration.recipes.activation_stats import ActivationStatsStep

    monkeypatch.setattr(ActivationStatsStep, "resume_attrs", None)  # finalize reports state nobody saves
    with pytest.warns(StaleWorkWarning, match="cannot be resumed"):
        run(tiny_model, RECIPES["activation-stats + rtn"], tiny_segments(n=4, seqlen=16),
            WorkFolder(tmp_path / "w", "k"))
    assert not (tmp_path / "w").exists()
