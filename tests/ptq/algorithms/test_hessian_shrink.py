"""shrink_to_diagonal: H' = (1 - lambda) H + lambda diag(H), from GPTQ (0) to round-to-nearest (1)."""
from __future__ import annotations

import pytest
import torch

from ptq.algorithms import gptq, rtn
from ptq.algorithms.hessian import shrink_to_diagonal
from ptq.spec import QuantSpec


def _layer(n: int = 32, out: int = 24, tokens: int = 512, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(tokens, n, generator=g) @ torch.randn(n, n, generator=g)
    W = torch.randn(out, n, generator=g)
    return X, W, 2 / tokens * X.T @ X


def test_shrink_keeps_the_diagonal_and_scales_the_rest():
    _, _, H = _layer()
    before = H.clone()
    out = shrink_to_diagonal(H, 0.25)
    assert torch.equal(H, before)  # not modified in place
    torch.testing.assert_close(torch.diagonal(out), torch.diagonal(H))
    off = ~torch.eye(H.shape[0], dtype=torch.bool)
    torch.testing.assert_close(out[off], 0.75 * H[off])
    assert torch.equal(shrink_to_diagonal(H, 0.0), H)
    assert torch.equal(shrink_to_diagonal(H, 1.0), torch.diag(torch.diagonal(H)))


@pytest.mark.parametrize("spec, act_order", [(QuantSpec(bits=4), False), (QuantSpec(bits=4), True),
                                              (QuantSpec(bits=3, granularity="group", group_size=8), False)])
def test_full_shrink_is_round_to_nearest(spec, act_order):
    """No error compensation is left (with act-order and groups the groups are of permuted columns)."""
    _, W, H = _layer()
    res = gptq(W, shrink_to_diagonal(H, 1.0), spec, blocksize=8, act_order=act_order)
    assert torch.equal(res.weight, rtn(W, spec).weight)


def test_partial_shrink_lies_between_gptq_and_rtn_on_the_calibration_inputs():
    X, W, H = _layer()
    spec = QuantSpec(bits=3)

    def err(Q):
        return float((X @ (W - Q).T).square().sum())

    e_gptq, e_half, e_rtn = (err(gptq(W, shrink_to_diagonal(H, lam), spec).weight) for lam in (0.0, 0.5, 1.0))
    assert e_gptq < e_half < e_rtn


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5"])
def test_bad_lambda(bad):
    with pytest.raises(ValueError, match="diag_shrink must be a number from 0 to 1"):
        shrink_to_diagonal(torch.eye(3), bad)
