"""AWQ's scale and clipping searches against slow, obviously correct loops (Lin et al., 2024, §3.2)."""
import math

import pytest
import torch

from ptq import QuantSpec
from ptq.algorithms.awq import alpha_grid, apply_clip, awq_clip, awq_scale, awq_scales, sample_tokens

SPEC = QuantSpec(bits=3, granularity="group", group_size=8)


def _rtn_loop(W: torch.Tensor, group: int, bits: int) -> torch.Tensor:
    """Asymmetric min-max round-to-nearest, one group of ``group`` columns at a time, in plain loops."""
    maxq = 2 ** bits - 1
    Q = torch.empty_like(W)
    for r in range(W.shape[0]):
        for c0 in range(0, W.shape[1], group):
            w = W[r, c0:c0 + group]
            lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
            scale = (hi - lo) / maxq
            zero = min(max(round(-lo / scale), 0), maxq)
            for j in range(group):
                q = min(max(round(float(w[j]) / scale) + zero, 0), maxq)
                Q[r, c0 + j] = scale * (q - zero)
    return Q


def _data(seed: int = 0, out: int = 6, K: int = 16, T: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, K, generator=g)
    X = torch.randn(T, K, generator=g) * torch.linspace(0.1, 6.0, K)  # channels of very different sizes
    return W, X


def test_scale_grid_and_normalisation() -> None:
    assert alpha_grid() == tuple(i / 20 for i in range(20))
    s_x = torch.tensor([0.5, 2.0, 8.0, 1e-9])
    assert torch.equal(awq_scale(s_x, 0.0), torch.ones(4))
    s = awq_scale(s_x, 0.5)
    raw = s_x.pow(0.5).clamp(min=1e-4)
    assert torch.allclose(s, raw / math.sqrt(float(raw.max() * raw.min())))
    assert float(s.max() * s.min()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="1-D"):
        awq_scale(torch.ones(2, 2), 0.5)


def test_awq_scales_matches_a_brute_force_search() -> None:
    W, X = _data()
    s_x = X.abs().mean(dim=0)
    res = awq_scales(W, s_x, X, SPEC, n_grid=10)
    ref = X @ W.t()
    losses = {}
    for i in range(10):
        alpha = i / 10
        s = [max(float(v) ** alpha, 1e-4) for v in s_x]
        norm = math.sqrt(max(s) * min(s))
        s = torch.tensor([v / norm for v in s])
        Wq = _rtn_loop(W * s, 8, 3) / s
        losses[alpha] = float(((X @ Wq.t()) - ref).pow(2).mean())
    best = min(losses, key=lambda a: (losses[a], a))
    assert res.alpha == best
    assert res.losses == pytest.approx(losses, rel=1e-4)
    assert torch.allclose(res.scale, awq_scale(s_x, best))
    assert res.losses[best] < res.losses[0.0]  # salient channels protected: better than plain RTN


def test_awq_clip_matches_a_brute_force_search() -> None:
    W, X = _data(seed=1)
    bound = awq_clip(W, X, SPEC, n_grid=10, max_shrink=0.5)
    assert bound.shape == (6, 2)
    for r in range(6):
        for g in range(2):
            w, x = W[r, 8 * g:8 * g + 8], X[:, 8 * g:8 * g + 8]
            amax = float(w.abs().max())
            errs = []
            for i in range(5):
                m = amax * (1 - i / 10)
                q = _rtn_loop(w.clamp(-m, m)[None], 8, 3)[0]
                errs.append((float((x @ (q - w)).pow(2).mean()), m))
            best = min(errs, key=lambda e: e[0])  # first of equal errors: the least shrink
            assert float(bound[r, g]) == pytest.approx(best[1], rel=1e-5)
    clipped = apply_clip(W, bound)
    assert torch.equal(clipped.reshape(6, 2, 8).abs().amax(-1) <= bound + 1e-7, torch.ones(6, 2, dtype=torch.bool))
    assert torch.equal(apply_clip(W, W.abs().reshape(6, 2, 8).amax(-1)), W)


def test_clip_per_channel_and_errors() -> None:
    W, X = _data(seed=2)
    bound = awq_clip(W, X, QuantSpec(bits=4), n_grid=20)
    assert bound.shape == (6, 1) and bool((bound <= W.abs().amax(1, keepdim=True)).all())
    with pytest.raises(ValueError, match="per-tensor"):
        awq_clip(W, X, QuantSpec(bits=4, granularity="tensor"))
    with pytest.raises(ValueError, match="max_shrink"):
        awq_clip(W, X, SPEC, max_shrink=1.0)
    with pytest.raises(ValueError, match="do not fit"):
        apply_clip(W, bound[:3])


def test_sample_tokens_strides_like_the_reference() -> None:
    X = torch.arange(30.0)[:, None].expand(30, 2)
    assert sample_tokens(X, 10)[:, 0].tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert sample_tokens(X, 100).shape == (30, 2)
