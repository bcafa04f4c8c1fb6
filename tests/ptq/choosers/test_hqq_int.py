"""``hqq-int``: HQQ's alternating solver with integer zero points and the scale optimised, against a slow
per-unit loop; 0 stays on the grid (the property real-valued zeros lose), never worse than min-max in
squared error, and usable by RTN and GPTQ through the registry."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ptq import QuantSpec
from ptq.algorithms import gptq
from ptq.algorithms.rtn import rtn, rtn_qparams
from ptq.choosers import get_qparams
from ptq.choosers.hqq import hqq_int_qparams, hqq_qparams
from ptq.errors import PTQUserError
from ptq.qparams import minmax_qparams

W3 = QuantSpec(3, granularity="group", group_size=64, scale_dtype="float16")


def slow_hqq_int(w: torch.Tensor, bits: int, lp: float = 0.7, beta: float = 10.0, kappa: float = 1.01, iters: int = 20):
    """One unit (a 1-D tensor), written out step by step in float64 for readability."""
    maxq = 2**bits - 1
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    s = (hi - lo) / maxq
    s = float(torch.tensor(s).half())
    z = min(max(round(-lo / s), 0), maxq)
    best = (float("inf"), s, z)
    for _ in range(iters + 1):
        q = [min(max(round(float(x) / s) + z, 0), maxq) for x in w]
        c = [qi - z for qi in q]
        e = [float(x) - s * ci for x, ci in zip(w, c)]
        err = sum(v * v for v in e)
        if err < best[0]:
            best = (err, s, z)
        we = [(1 if v > 0 else -1) * max(abs(v) - (abs(v) + 1e-8) ** (lp - 1) / beta, 0.0) for v in e]
        cc = sum(ci * ci for ci in c)
        if cc > 0:
            s = sum((float(x) - wei) * ci for x, wei, ci in zip(w, we, c)) / cc
        s = float(torch.tensor(max(s, 2.0**-24)).half())
        z = min(max(round(sum(qi - (float(x) - wei) / s for qi, x, wei in zip(q, w, we)) / len(w)), 0), maxq)
        beta *= kappa
    return best[1], best[2]


def test_matches_a_slow_loop():
    W = torch.randn(6, 128, generator=torch.Generator().manual_seed(0)) * 0.05
    scale, zero = hqq_int_qparams(W, W3)
    for r in range(6):
        for g in range(2):
            s, z = slow_hqq_int(W[r, g * 64 : (g + 1) * 64].double(), 3)
            assert scale[r, g].item() == pytest.approx(s, rel=2e-3) and zero[r, g].item() == z


def test_zero_on_the_grid_and_never_worse_than_minmax():
    W = torch.randn(32, 256, generator=torch.Generator().manual_seed(1))
    W[:, ::64] = 1e-4  # near-zero weights: integer zeros keep them within |w| of 0
    q = rtn_qparams(W, W3, "hqq-int")
    assert torch.equal(q.zero, q.zero.round()) and torch.equal(q.scale, q.scale.half().float())
    assert bool((q.weight[:, ::64] == 0).all())
    base = rtn(W, W3, *minmax_qparams(W, W3))
    per_unit = lambda Q: (W - Q).reshape(32, 4, 64).square().sum(-1)  # noqa: E731
    assert bool((per_unit(q.weight) <= per_unit(base.weight) + 1e-7).all())
    assert q.loss < 0.95 * base.loss


def test_float_zeros_move_zero_off_the_grid():
    """What hqq (real-valued zeros) does to near-zero weights and hqq-int does not."""
    W = torch.randn(32, 256, generator=torch.Generator().manual_seed(2))
    W[:, 5] = 0.0
    fspec = dataclasses.replace(W3, zero_dtype="float32")
    float_q = rtn(W, fspec, *hqq_qparams(W, fspec)).weight
    assert float(float_q[:, 5].abs().max()) > 0
    assert float(rtn_qparams(W, W3, "hqq-int").weight[:, 5].abs().max()) == 0


def test_refuses_float_zero_or_symmetric_and_bad_options():
    W = torch.randn(4, 64)
    with pytest.raises(PTQUserError, match="integer zeros"):
        hqq_int_qparams(W, dataclasses.replace(W3, zero_dtype="float16"))
    with pytest.raises(PTQUserError, match="integer zeros"):
        hqq_int_qparams(W, dataclasses.replace(W3, symmetric=True))
    with pytest.raises(PTQUserError, match="lp_norm"):
        hqq_int_qparams(W, W3, lp_norm=2.0)


def test_registered_for_rtn_and_gptq():
    chooser = get_qparams("hqq-int")
    assert not chooser.float_zero and not chooser.uses_importance
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 128, generator=g)
    X = torch.randn(256, 128, generator=g)
    res = gptq(W, 2 * X.t() @ X / 256, W3, qparams="hqq-int", act_order=True)
    assert torch.equal(res.zero, res.zero.round()) and res.weight.shape == W.shape
