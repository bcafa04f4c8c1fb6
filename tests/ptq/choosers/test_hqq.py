"""HQQ's zero-point solver against a slow element-by-element loop, and through RTN, GPTQ and the module."""
from __future__ import annotations

import math

import pytest
import torch

from ptq import QuantSpec
from ptq.algorithms import gptq, rtn
from ptq.algorithms.hqq import hqq
from ptq.choosers import choose_qparams, get_qparams
from ptq.choosers.hqq import hqq_qparams


def slow_hqq(W, group, bits, p=0.7, beta=10.0, kappa=1.01, iters=20):
    """The paper's iteration written out with Python floats, one group at a time (include_zero ranges)."""
    maxq = 2**bits - 1
    rows = [list(map(float, r)) for r in W.tolist()]
    groups = [r[g:g + group] for r in rows for g in range(0, len(r), group)]
    scales, zeros = [], []
    for x in groups:
        lo, hi = min(min(x), 0.0), max(max(x), 0.0)
        s = float((torch.tensor(hi) - torch.tensor(lo)) / maxq)  # ptq's float32 scale
        scales.append(s)
        zeros.append(-lo / s)
    best = list(zeros)
    best_err = math.inf
    b = beta
    for _ in range(iters):
        qs = [[min(max(round(v / s + z), 0), maxq) for v in x] for x, s, z in zip(groups, scales, zeros)]
        errs = [v - s * (q - z) for x, s, z, q in zip(groups, scales, zeros, qs) for v, q in zip(x, q)]
        err = sum(abs(e) for e in errs) / len(errs)
        if err >= best_err:
            break
        best, best_err = list(zeros), err
        new = []
        for x, s, z, q in zip(groups, scales, zeros, qs):
            terms = []
            for v, c in zip(x, q):
                e = v - s * (c - z)
                shrunk = math.copysign(max(abs(e) - (abs(e) + 1e-8) ** (p - 1) / b, 0.0), e) if e else 0.0
                terms.append(c - (v - shrunk) / s)
            new.append(sum(terms) / len(terms))
        zeros = new
        b *= kappa
    return torch.tensor(scales).reshape(W.shape[0], -1), torch.tensor(best).reshape(W.shape[0], -1)


@pytest.mark.parametrize("bits", [3, 4])
def test_matches_the_slow_loop(bits):
    torch.manual_seed(bits)
    W = torch.randn(6, 32) * 0.05
    W[:, 3] *= 8  # an outlier column: the l_p fit moves the zero away from min-max
    spec = QuantSpec(bits=bits, granularity="group", group_size=16, zero_dtype="float32")
    scale, zero = hqq_qparams(W, spec)
    ref_scale, ref_zero = slow_hqq(W, 16, bits)
    torch.testing.assert_close(scale, ref_scale, rtol=0, atol=0)
    torch.testing.assert_close(zero, ref_zero, rtol=1e-4, atol=1e-4)
    assert not torch.equal(zero, zero.round())  # real-valued zeros


def test_beats_minmax_and_keeps_storage_rules():
    torch.manual_seed(0)
    W = torch.randn(64, 256) * 0.02
    W[:, :4] *= 10
    spec = QuantSpec(bits=4, granularity="group", group_size=64)
    res = hqq(W, spec)
    assert res.spec.zero_dtype == "float16" and torch.equal(res.zero, res.zero.half().float())
    assert (W - res.weight).abs().mean() < (W - rtn(W, spec).weight).abs().mean()
    scale, zero = choose_qparams("hqq", W, spec)  # an int-zero spec: HQQ's round_zero variant
    assert torch.equal(zero, zero.round()) and int(zero.min()) >= 0 and int(zero.max()) <= 15
    assert get_qparams("hqq").float_zero
    with pytest.raises(ValueError, match="symmetric grid fixes it"):
        hqq_qparams(W, QuantSpec(symmetric=True))
    with pytest.raises(ValueError, match="lp_norm"):
        hqq_qparams(W, spec, lp_norm=2)
    s0, z0 = hqq_qparams(W, QuantSpec(bits=4, zero_dtype="float32"), iters=0)  # no iteration: min-max start
    xmin = W.amin(1, keepdim=True).clamp(max=0)
    torch.testing.assert_close(z0, -xmin / s0)


def test_constant_and_zero_rows_stay_exact():
    W = torch.zeros(3, 16)
    W[1] = 0.25
    W[2, :8] = -1.0
    spec = QuantSpec(bits=4, granularity="group", group_size=8, zero_dtype="float32")
    res = rtn(W, spec, *hqq_qparams(W, spec))
    torch.testing.assert_close(res.weight, W, rtol=0, atol=0)


def test_gptq_with_hqq_zeros():
    torch.manual_seed(0)
    X = torch.randn(512, 64)
    X[:, 5] *= 6
    W = torch.randn(16, 64) * 0.05
    H = 2 * X.t() @ X / X.shape[0]
    spec = QuantSpec(bits=3, granularity="group", group_size=16, zero_dtype="float16")
    res = gptq(W, H, spec, act_order=True, qparams="hqq")
    assert res.zero.shape == (16, 4) and not torch.equal(res.zero, res.zero.round())
    # the weight is on its grid: re-quantizing with the returned qparams gives it back
    cols = torch.arange(64)
    g = res.g_idx.long() if res.g_idx is not None else cols // 16
    s, z = res.scale[:, g], res.zero[:, g]
    again = s * (torch.clamp(torch.round(res.weight / s + z), 0, 7) - z)
    torch.testing.assert_close(again, res.weight, rtol=0, atol=1e-6)
    err = lambda Q: float(((X @ (W - Q).t()) ** 2).sum())  # noqa: E731
    assert err(res.weight) < err(hqq(W, spec).weight)


def test_quant_linear_stores_real_zeros(tmp_path):
    from torch import nn

    from ptq.modules import QuantLinear

    torch.manual_seed(0)
    lin = nn.Linear(64, 8)
    spec = QuantSpec(bits=4, granularity="group", group_size=32, zero_dtype="float16")
    res = hqq(lin.weight.detach(), spec)
    lin.weight.data = res.weight.clone()
    qm = QuantLinear.from_float(lin, spec, res.scale, res.zero)
    assert qm.qzeros is None and qm.zero_points.dtype == torch.float16
    torch.testing.assert_close(qm.dequantize_weight(), res.weight, rtol=0, atol=0)
    qm = qm.to(torch.bfloat16)
    assert qm.zero_points.dtype == torch.float16
    with pytest.raises(ValueError, match="must be float16 numbers"):
        QuantLinear.from_float(lin, spec, res.scale, res.zero + 1e-4)


def test_rtn_step_with_hqq_checkpoint_round_trip(tmp_path, tiny_model, tiny_segments):
    from calibration.recipes import Recipe
    from calibration.runner import quantize_model
    from evaluations.footprint import footprint
    from ptq.checkpoint import load_quantized, save_quantized

    model = tiny_model("llama")
    recipe = Recipe.from_list([{"step": "rtn", "bits": 4, "group_size": 32, "granularity": "group", "qparams": "hqq"}])
    result = quantize_model(model, recipe, tiny_segments(), progress=False)
    ids = tiny_segments(n=2)
    with torch.no_grad():
        ref = model(ids).logits
    save_quantized(model, tmp_path / "q", result.records)
    loaded, _ = load_quantized(tmp_path / "q")
    qms = [m for m in loaded.modules() if type(m).__name__ == "QuantLinear"]
    assert qms and all(m.zero_points is not None and m.qzeros is None for m in qms)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, ref, rtol=0, atol=1e-5)
    specs = {n: r.spec for n, r in result.records.items()}
    assert footprint(model, specs).quantized_bytes == footprint(loaded).quantized_bytes
