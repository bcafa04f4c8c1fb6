"""The Hessian accumulator's token-norm clipping (massive-activation tokens)."""
from __future__ import annotations

import pytest
import torch

from ptq.algorithms import HessianAccumulator
from ptq.algorithms.hessian import clip_token_norms


def sequences_with_a_massive_first_token(batch: int = 4, seq: int = 64, n: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, seq, n, generator=g)
    x[:, 0] *= 500.0  # an attention-sink token, as at SmolLM2's down_proj inputs
    return x


def test_clip_scales_only_the_tokens_above_the_limit_down_to_it():
    x = sequences_with_a_massive_first_token()
    y = clip_token_norms(x, 4.0)
    norms, new = x.norm(dim=-1), y.norm(dim=-1)
    limit = 4.0 * norms.median(dim=-1, keepdim=True).values
    over = norms > limit
    assert over[:, 0].all() and over.sum() == 4  # only the sink tokens
    torch.testing.assert_close(new[over], limit.expand_as(norms)[over])
    assert torch.equal(y[~over], x[~over])
    cos = torch.nn.functional.cosine_similarity(y[:, 0], x[:, 0], dim=-1)
    torch.testing.assert_close(cos, torch.ones(4))  # direction kept


def test_clipped_hessian_does_not_depend_on_batching_and_is_not_dominated():
    x = sequences_with_a_massive_first_token()
    whole, one_by_one = HessianAccumulator(32, token_clip=4.0), HessianAccumulator(32, token_clip=4.0)
    whole.update(x)
    for seq in x:
        one_by_one.update(seq)  # a 2-D input is one sequence
    torch.testing.assert_close(whole.H, one_by_one.H)
    sink_share = lambda t: float(t[:, 0].square().sum() / t.square().sum())  # = its share of trace(H)  # noqa: E731
    assert sink_share(x) > 0.99  # the sink tokens are ~all of H
    assert sink_share(clip_token_norms(x, 4.0)) < 0.25

def test_no_clip_when_every_token_is_alike_and_bad_ratios():
    x = torch.ones(2, 8, 4)
    assert torch.equal(clip_token_norms(x, 1.5), x)
    assert torch.equal(clip_token_norms(torch.zeros(3, 4), 2.0), torch.zeros(3, 4))  # no division by zero
    for bad in (1.0, 0.5, -3.0):
        with pytest.raises(ValueError, match="token_clip must be a number above 1"):
            HessianAccumulator(4, token_clip=bad)


def test_bfloat16_products_are_the_exact_sums_up_to_one_rounding_per_chunk():
    """products="bfloat16": H from bf16 matmuls whose results are rounded once per PRODUCT_ROWS tokens stays within
    a few 2^-9 / sqrt(chunks) of the float64 sums of the same bf16 inputs; float inputs are rounded to bf16 first."""
    import ptq.algorithms.hessian as hessian

    g = torch.Generator().manual_seed(0)
    n, rows = 96, 3 * hessian.PRODUCT_ROWS + 100  # several chunks and a partial one
    X = (torch.randn(rows, n, generator=g) * torch.rand(n, generator=g) * 4 + torch.randn(n, generator=g))
    Xb = X.bfloat16()
    exact = 2 * Xb.double().T @ Xb.double() / rows
    for triangular in (True, False):
        acc = HessianAccumulator(n, products="bfloat16", triangular=triangular)
        acc.update(Xb[:1000])
        acc.update(Xb[1000:])
        assert acc.nsamples == rows and acc.H.dtype == torch.float32
        assert torch.equal(acc.H, acc.H.T)
        rel = float((acc.H.double() - exact).norm() / exact.norm())
        assert 0 < rel < 2 ** -9, rel  # not exact (the products were rounded), well inside one bf16 rounding
        from_float = HessianAccumulator(n, products="bfloat16", triangular=triangular)
        from_float.update(X[:1000])
        from_float.update(X[1000:])
        assert torch.equal(from_float.H, acc.H)
    assert "products='bfloat16'" in repr(acc) and "products" not in repr(HessianAccumulator(n))
    with pytest.raises(ValueError, match="products must be one of exact, bfloat16"):
        HessianAccumulator(n, products="float16")


def test_bfloat16_products_with_token_clip_clip_first():
    x = sequences_with_a_massive_first_token()
    clipped = clip_token_norms(x, 4.0).bfloat16()
    ref = HessianAccumulator(x.shape[-1], products="bfloat16")
    ref.update(clipped)
    acc = HessianAccumulator(x.shape[-1], products="bfloat16", token_clip=4.0)
    acc.update(x)
    torch.testing.assert_close(acc.H, ref.H, rtol=1e-2, atol=1e-3)
