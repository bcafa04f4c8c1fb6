"""Data-parallel calibration (two processes with torchrun's environment) gives one process's model."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from calibration import distributed
from calibration.runner.spread import first_samples_here, reduce_statistic
from dist_launch import finish, start

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import dist_worker  # noqa: E402


def same_codes(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of elements equal up to float noise (a changed code moves a weight by a whole step)."""
    if not a.is_floating_point():
        return float((a == b).float().mean())
    tol = 1e-5 * float(a.abs().max().clamp(min=1e-30))
    return float(((a.float() - b.float()).abs() <= tol).float().mean())


def test_no_torchrun_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched() and not distributed.init()
    assert (distributed.rank(), distributed.world_size(), distributed.share(10)) == (0, 1, (0, 10))
    x = torch.arange(4.0)
    assert distributed.split_rows(x, "rows") is x and distributed.all_reduce_(x) is x
    assert first_samples_here(3, 8) == 3
    obs = object()
    reduce_statistic(obs)  # nothing to reduce with one process, whatever it is


def test_shares_are_contiguous_and_cover_everything():
    for n in (2, 7, 12):
        for world in (2, 3):
            spans = [distributed.share(n, world, r) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert max(b - a for a, b in spans) - min(b - a for a, b in spans) <= 1


def test_two_processes_quantize_like_one(tmp_path, one_thread):
    """GPTQ (act-order, groups, true-sequential), SmoothQuant auto + static W8A8 (MSE observer) and
    activation-stats + AWQ + RTN: the same weights and qparams, alphas and summaries."""
    procs = start([str(HERE / "dist_worker.py"), str(tmp_path / "two.pt")])
    one = dist_worker.run_all()  # while the two ranks start up and run
    ranks = finish(procs, timeout=240)
    assert all(r.returncode == 0 for r in ranks), [r.stderr[-3000:] for r in ranks]
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    for name in dist_worker.RECIPES:
        a, b = one[name], two[name]
        assert a["state"].keys() == b["state"].keys()
        for key, t in a["state"].items():
            assert same_codes(t, b["state"][key]) >= 0.999, (name, key)
            if t.is_floating_point():
                torch.testing.assert_close(t, b["state"][key], rtol=1e-3, atol=1e-5 * float(t.abs().max()))
        steps_a, steps_b = a["steps"], b["steps"]
        for sa, sb in zip(steps_a, steps_b):
            for k in ("alphas", "layers", "fallbacks"):
                if k in sa and k != "layers" or (k == "layers" and sa.get("step") == "gptq"):
                    assert sa[k] == sb[k], (name, k)
            if "total_loss" in sa:
                assert sb["total_loss"] == pytest.approx(sa["total_loss"], rel=1e-3)
        stats_a = next((s for s in steps_a if s["step"] == "activation-stats"), None)
        if stats_a is not None:
            stats_b = next(s for s in steps_b if s["step"] == "activation-stats")
            for layer, summary in stats_a["layers"].items():
                assert stats_b["layers"][layer] == pytest.approx(summary, rel=1e-4)
