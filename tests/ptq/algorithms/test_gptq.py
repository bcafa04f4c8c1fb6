"""GPTQ on single random layers: beats RTN, matches a slow column-by-column reference, edge cases."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ptq import qparams as qparams_module
from ptq.algorithms import HessianAccumulator, gptq, rtn
from ptq.algorithms.gptq import inverse_cholesky
from ptq.qparams import minmax_qparams
from ptq.spec import QuantSpec


def correlated_layer(n: int = 64, out: int = 48, tokens: int = 1024, seed: int = 0, dtype=torch.float32):
    """Inputs X = Z @ A (H far from diagonal, unequal diagonal), a weight, and H = 2/N X^T X."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64) * torch.rand(n, generator=g, dtype=torch.float64) * 2
    X = (torch.randn(tokens, n, generator=g, dtype=torch.float64) @ A).to(dtype)
    W = torch.randn(out, n, generator=g, dtype=torch.float64).to(dtype)
    acc = HessianAccumulator(n, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    for chunk in X.split(300):
        acc.update(chunk)
    return X, W, acc.H


def output_error(X: torch.Tensor, W: torch.Tensor, Q: torch.Tensor) -> float:
    return float((X.double() @ (W.double() - Q.double()).T).norm())


def rebuild(res, n: int) -> torch.Tensor:
    """Dequantize ``res.weight`` from its own scale / zero / g_idx (codes recomputed)."""
    spec = res.spec
    if spec.granularity == "group":
        s, z = res.scale[:, res.g_idx.long()], res.zero[:, res.g_idx.long()]
    else:
        s, z = res.scale.expand(-1, n) if res.scale.shape[0] > 1 else res.scale, res.zero
    codes = torch.round(res.weight / s) + z
    assert codes.min() >= 0 and codes.max() <= spec.maxq
    return s * (codes - z)


def slow_gptq(W, H, spec, damp=0.01, act_order=False, static_groups=False):
    """Column by column, no blocking, float64: q = quant(w_i); err = (w_i - q) / Hinv_ii;
    W[:, i+1:] -= err Hinv[i, i+1:], Hinv the upper Cholesky factor of (H + damp I)^-1."""
    W, H = W.double().clone(), H.double().clone()
    n = W.shape[1]
    grouped = spec.granularity == "group"
    g = spec.group_size or n
    row = dataclasses.replace(spec, granularity="channel", group_size=None)
    if not grouped:
        s, z = minmax_qparams(W, spec)
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups:
        fixed = [minmax_qparams(W[:, k : k + g], row) for k in range(0, n, g)]
    perm = torch.argsort(torch.diagonal(H), descending=True, stable=True) if act_order else torch.arange(n)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * torch.diagonal(H).mean() * torch.eye(n, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.linalg.inv(H), upper=True)
    Q, loss = torch.zeros_like(W), 0.0
    for i in range(n):
        if static_groups:
            s, z = fixed[int(perm[i]) // g]
        elif grouped and i % g == 0:
            s, z = minmax_qparams(W[:, i : i + g], row)
        s64, z64 = s.reshape(-1).double(), z.reshape(-1).double()
        q = s64 * (torch.clamp(torch.round(W[:, i] / s64) + z64, 0, spec.maxq) - z64)
        err = (W[:, i] - q) / Hinv[i, i]
        W[:, i + 1 :] -= err[:, None] * Hinv[i, i + 1 :][None, :]
        Q[:, i] = q
        loss += float(err.square().sum()) / 2
    return Q[:, torch.argsort(perm)], loss


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("granularity", ["channel", "group"])
def test_gptq_beats_rtn_on_correlated_inputs(bits, granularity):
    X, W, H = correlated_layer(seed=bits)
    spec = QuantSpec(bits=bits, granularity=granularity, group_size=16 if granularity == "group" else None)
    res = gptq(W, H, spec)
    assert output_error(X, W, res.weight) < 0.95 * output_error(X, W, rtn(W, spec).weight)  # typically 0.7-0.9
    assert res.loss is not None and res.loss > 0 and res.info["damp"] == 0.01


@pytest.mark.parametrize("spec", [QuantSpec(bits=4), QuantSpec(bits=3, granularity="group", group_size=16),
                                  QuantSpec(bits=8, granularity="tensor", symmetric=True)], ids=str)
@pytest.mark.parametrize("act_order", [False, True])
def test_identity_hessian_equals_rtn_exactly(spec, act_order):
    _, W, _ = correlated_layer()
    res, ref = gptq(W, torch.eye(W.shape[1]), spec, blocksize=16, act_order=act_order), rtn(W, spec)
    assert torch.equal(res.weight, ref.weight)
    assert torch.equal(res.scale, ref.scale) and torch.equal(res.zero, ref.zero)


@pytest.mark.parametrize("static_groups", [False, True])
def test_act_order_g_idx_dequantizes_consistently(static_groups):
    _, W, H = correlated_layer(n=64)
    spec = QuantSpec(bits=3, granularity="group", group_size=16)
    res = gptq(W, H, spec, blocksize=24, act_order=True, static_groups=static_groups)
    assert res.g_idx.dtype == torch.int32 and res.g_idx.shape == (64,)
    assert res.scale.shape == res.zero.shape == (W.shape[0], 4)
    assert torch.bincount(res.g_idx.long()).tolist() == [16] * 4
    natural = torch.arange(64, dtype=torch.int32) // 16
    assert torch.equal(res.g_idx, natural) == static_groups  # act-order permutes the dynamic groups
    torch.testing.assert_close(rebuild(res, 64), res.weight, rtol=0, atol=1e-6)


@pytest.mark.parametrize("granularity,act_order,static_groups", [
    ("channel", False, False), ("channel", True, False),
    ("group", False, False), ("group", True, False), ("group", True, True), ("group", False, True),
])
def test_matches_slow_column_by_column_reference(granularity, act_order, static_groups):
    X, W, H = correlated_layer(n=48, out=24, dtype=torch.float64)
    H[5, :] = 0
    H[:, 5] = 0  # one dead input
    spec = QuantSpec(bits=3, granularity=granularity, group_size=12 if granularity == "group" else None)
    Q, loss = slow_gptq(W, H, spec, act_order=act_order, static_groups=static_groups)
    for blocksize in (5, 16, 128):  # blocks cut groups (12) at different places
        res = gptq(W, H, spec, blocksize=blocksize, act_order=act_order, static_groups=static_groups)
        torch.testing.assert_close(res.weight.double(), Q, rtol=0, atol=1e-6)
        assert res.loss == pytest.approx(loss, rel=1e-9)


def test_float32_close_to_float64():
    _, W, H = correlated_layer()
    spec = QuantSpec(bits=4, granularity="group", group_size=16)
    a, b = gptq(W, H, spec, act_order=True), gptq(W.double(), H.double(), spec, act_order=True)
    assert ((a.weight - b.weight.float()).abs() > 1e-4).float().mean() < 0.02  # a few rounding flips at most
    assert a.loss == pytest.approx(b.loss, rel=1e-3)


def test_dead_columns_are_zero():
    _, W, H = correlated_layer()
    for j in (3, 40):
        H[j, :] = 0
        H[:, j] = 0
    res = gptq(W, H, QuantSpec(bits=4), act_order=True)
    assert res.info["dead_columns"] == 2
    assert torch.equal(res.weight[:, [3, 40]], torch.zeros(W.shape[0], 2)) and torch.isfinite(res.weight).all()


def test_damping_is_raised_for_a_slightly_indefinite_hessian():
    _, W, H = correlated_layer()
    v = torch.linalg.eigh(H).eigenvectors[:, 0]
    H = H - 0.05 * torch.diagonal(H).mean() * torch.outer(v, v)  # one eigenvalue ~ -0.05 mean(diag)
    res = gptq(W, H, QuantSpec(bits=4))
    assert res.info["damp"] == pytest.approx(0.1) and "fallback" not in res.info


@pytest.mark.parametrize("overwrite", [False, True])
def test_inverse_cholesky_is_the_textbook_factor_made_in_place(overwrite):
    _, _, H = correlated_layer()
    d = 0.01 * torch.diagonal(H).mean()
    expected = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H + d * torch.eye(len(H)))), upper=True)
    H_before = H.clone()
    U, rel = inverse_cholesky(H, 0.01, overwrite=overwrite)
    assert rel == 0.01 and torch.equal(U, expected)
    if overwrite:
        assert U.data_ptr() == H.data_ptr()  # the factor in the work matrix's memory
    else:
        assert U.data_ptr() != H.data_ptr() and torch.equal(H, H_before)


def test_inverse_cholesky_holds_two_matrices(monkeypatch):
    """``L -> L^-T L^-1 -> U`` in L's memory, then into the work matrix: one n x n matrix besides it."""
    _, _, H = correlated_layer()
    made = []
    real = torch.linalg.cholesky_ex

    def counting(A, *args, out=None, **kw):
        r = real(A, *args, out=out, **kw)
        if out is None:
            made.append(r[0].data_ptr())
        return r

    monkeypatch.setattr(torch.linalg, "cholesky_ex", counting)
    U, _ = inverse_cholesky(H, 0.01, overwrite=True)
    assert len(made) == 1 and U.data_ptr() == H.data_ptr()


def test_non_positive_definite_hessian_falls_back_to_rtn():
    _, W, _ = correlated_layer()
    spec = QuantSpec(bits=4, granularity="group", group_size=16)
    with pytest.warns(RuntimeWarning, match="not positive definite"):
        res = gptq(W, -torch.eye(W.shape[1]), spec)
    assert res.info["fallback"] == "rtn"
    assert torch.equal(res.weight, rtn(W, spec).weight)
    assert torch.equal(res.g_idx, torch.arange(W.shape[1], dtype=torch.int32) // 16)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_hessian_or_input_raises(bad):
    _, W, H = correlated_layer()
    H[2, 3] = bad
    with pytest.raises(ValueError, match="Hessian contains NaN or inf"):
        gptq(W, H, QuantSpec(bits=4))
    x = torch.randn(2, 5, W.shape[1])
    x[1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN" if bad != bad else "inf"):
        HessianAccumulator(W.shape[1]).update(x)


def test_bad_arguments():
    _, W, H = correlated_layer()
    with pytest.raises(ValueError, match=r"Hessian must be \[64, 64\]"):
        gptq(W, H[:10, :10], QuantSpec(bits=4))
    with pytest.raises(ValueError, match="static_groups needs granularity 'group'"):
        gptq(W, H, QuantSpec(bits=4), static_groups=True)
    with pytest.raises(ValueError, match="group sizes that divide it: 8, 16, 32, 64"):
        gptq(W, H, QuantSpec(bits=4, granularity="group", group_size=24))


def test_hessian_accumulator_running_mean_triangle_merge():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(700, 200, generator=g, dtype=torch.float64)  # 200 columns: 4 strips
    expected = 2 * X.T @ X / 700
    chunks = [X[:1], X[1:300].reshape(13, 23, 200), X[300:]]
    tri, mm, f64 = HessianAccumulator(200), HessianAccumulator(200, triangular=False), HessianAccumulator(200, torch.float64)
    for c in chunks:
        for acc in (tri, mm, f64):
            acc.update(c.float() if acc is not f64 else c)
    assert tri.nsamples == mm.nsamples == f64.nsamples == 700
    torch.testing.assert_close(f64.H, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(tri.H, tri.H.T)  # one triangle computed, mirrored
    for acc in (tri, mm):
        assert acc.H.dtype == torch.float32
        torch.testing.assert_close(acc.H.double(), expected, rtol=1e-5, atol=1e-5)
    a, b = HessianAccumulator(200), HessianAccumulator(200)
    a.update(X[:200].float())
    b.update(X[200:].bfloat16())  # any float dtype is accepted
    a.merge(b)
    assert a.nsamples == 700
    torch.testing.assert_close(a.H.double(), expected, rtol=2e-2, atol=2e-2)
    with torch.inference_mode():  # as inside the runner's hooks; H stays usable outside
        c = HessianAccumulator(200)
        c.update(X.float())
    c.merge(a)
    assert c.nsamples == 1400


@pytest.mark.parametrize("spec, act_order", [(QuantSpec(bits=3), True), (QuantSpec(bits=3, granularity="group", group_size=16), True),
                                             (QuantSpec(bits=3, granularity="group", group_size=16), False)])
def test_mse_weighted_uses_the_hessian_diagonal_of_the_right_columns(spec, act_order, monkeypatch):
    X, W, H = correlated_layer()
    seen = []
    real = qparams_module.mse_qparams

    def spy(x, s, **kw):
        seen.append(kw.get("column_weight"))
        return real(x, s, **kw)

    monkeypatch.setattr(qparams_module, "mse_qparams", spy)
    res = gptq(W, H, spec, act_order=act_order, mse=True, mse_weighted=True)
    assert seen and all(w is not None for w in seen)
    diag = torch.diagonal(H)
    if spec.granularity == "channel":
        torch.testing.assert_close(seen[0], diag)
    else:  # one call per group, on the columns the group holds (in act-order's permutation)
        order = torch.argsort(diag, descending=True, stable=True) if act_order else torch.arange(len(diag))
        assert len(seen) == W.shape[1] // 16
        for k, w in enumerate(seen):
            torch.testing.assert_close(w, diag[order[16 * k: 16 * (k + 1)]])
    torch.testing.assert_close(rebuild(res, W.shape[1]), res.weight, rtol=0, atol=1e-6)
    assert output_error(X, W, res.weight) < output_error(X, W, rtn(W, spec).weight)
    with pytest.raises(ValueError, match="mse_weighted weighs the mse grid search"):
        gptq(W, H, spec, mse_weighted=True)


def test_mse_grid_search_option():
    X, W, H = correlated_layer()
    spec = QuantSpec(bits=3, granularity="group", group_size=16)
    res = gptq(W, H, spec, act_order=True, mse=True)
    torch.testing.assert_close(rebuild(res, W.shape[1]), res.weight, rtol=0, atol=1e-6)
    assert output_error(X, W, res.weight) < output_error(X, W, rtn(W, spec).weight)
