"""AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", MLSys 2024): per-input-channel scales searched on calibration activations, then
a search of each weight group's clipping range.

**Scale search** (§3.2 "Searching to scale"). A linear layer (or a group of layers reading the
same input ``X``, ``[tokens, K]``) computes ``Y = X W^T = (X diag(s)^-1) (W diag(s))^T``. AWQ
quantizes ``W diag(s)`` instead of ``W`` and divides the input by ``s``, so that the salient input
channels (large activations) get a finer grid. The scales are

    s = s_X^alpha,   s_X[j] = mean_t |X[t, j]|   (the average activation magnitude)

normalised as the reference code does, ``s / sqrt(max(s) * min(s))`` (after clamping
``s_X^alpha`` to ``>= 1e-4``), and ``alpha`` is searched on the grid ``0, 1/n_grid, ...,
(n_grid-1)/n_grid`` (``n_grid = 20``) minimising

    L(s) = || f(X; W) - f(X; Q(W diag(s)) diag(s)^-1) ||^2 / numel           (Eq. 5)

where ``f`` is the group's module (the attention block for q/k/v, the MLP for gate/up, the layer
itself otherwise) and ``Q`` the weight quantizer (RTN min-max, :func:`ptq.algorithms.rtn.rtn`).
``alpha = 0`` gives ``s = 1``, plain RTN; ties keep the smaller alpha (the reference's strict ``<``).
``diag(s)^-1`` is then folded into the operation producing ``X`` (a norm, or the output rows of
the previous linear layer; :func:`ptq.algorithms.smoothquant.apply_smoothing`).

**Clipping search** (the reference's ``auto_clip``). For each output row and quantization group
``g`` of the scaled weight, the range ``[-m, m]`` with ``m = (1 - i / n_grid) max|W_g|``,
``i = 0 .. max_shrink * n_grid - 1``, minimising the group's share of the output error on a
sample of input tokens, ``mean_t (X_g[t] . (W_g - Q(clamp(W_g, -m, m))))^2``, is kept; the
weight is clamped to it before quantization.

:func:`awq_scales` runs the scale search on one weight alone (the loss is that layer's output);
:func:`search_scale` takes any loss, for groups of layers; :func:`awq_clip` / :func:`apply_clip`
are the clipping search.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ptq.algorithms.rtn import rtn
from ptq.spec import QuantSpec

N_GRID = 20
SCALE_MIN = 1e-4
MAX_SHRINK = 0.5
CLIP_TOKENS = 512
CLIP_ROWS = 256  # output rows per clipping batch (memory)


@dataclass
class ScaleSearch:
    """Result of a scale search: the chosen ``scale`` ``[K]``, its ``alpha``, and ``losses[alpha]``."""

    scale: torch.Tensor
    alpha: float
    losses: dict[float, float] = field(default_factory=dict)


def alpha_grid(n_grid: int = N_GRID) -> tuple[float, ...]:
    """``0, 1/n_grid, ..., (n_grid - 1)/n_grid`` (the reference's ``range(n_grid)`` ratios)."""
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 1:
        raise ValueError(f"n_grid must be a positive integer, got {n_grid!r}")
    return tuple(i / n_grid for i in range(n_grid))


def awq_scale(s_x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s = max(s_x^alpha, 1e-4)``, normalised to ``s / sqrt(max(s) min(s))`` (float32 ``[K]``)."""
    s_x = s_x.float()
    if s_x.dim() != 1:
        raise ValueError(f"s_x (mean |x| per input channel) must be 1-D [K], got shape {tuple(s_x.shape)}")
    if not bool(torch.isfinite(s_x).all()) or bool((s_x < 0).any()):
        raise ValueError("s_x (mean |x| per input channel) must be finite and non-negative")
    s = s_x.pow(alpha).clamp(min=SCALE_MIN)
    return s / (s.max() * s.min()).sqrt()


def scaled_fake_quant(W: torch.Tensor, s: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``Q(W diag(s)) diag(s)^-1``: the weight AWQ's quantized layer applies to the unscaled input."""
    s = s.float().to(W.device)
    return rtn(W.float() * s[None, :], spec).weight / s[None, :]


def search_scale(s_x: torch.Tensor, loss: Callable[[torch.Tensor], float], n_grid: int = N_GRID) -> ScaleSearch:
    """The scale of :func:`awq_scale` on :func:`alpha_grid` whose ``loss(s)`` is the smallest (ties: smaller alpha)."""
    losses: dict[float, float] = {}
    best: tuple[float, float] | None = None
    for alpha in alpha_grid(n_grid):
        value = float(loss(awq_scale(s_x, alpha)))
        losses[alpha] = value
        if best is None or value < best[1]:
            best = (alpha, value)
    assert best is not None
    return ScaleSearch(scale=awq_scale(s_x, best[0]), alpha=best[0], losses=losses)


@torch.no_grad()
def awq_scales(W: torch.Tensor, s_x: torch.Tensor, X: torch.Tensor, spec: QuantSpec,
               n_grid: int = N_GRID) -> ScaleSearch:
    """AWQ's scale search for one linear layer alone: the loss is its own output error (Eq. 5).

    Args:
        W: the weight ``[out, K]``.
        s_x: mean |x| per input channel ``[K]`` (over all calibration tokens).
        X: sample inputs ``[..., K]`` the loss is measured on.
        spec: the weight quantizer's format (RTN min-max on ``W diag(s)``).
        n_grid: number of alphas tried.
    """
    W = W.float()
    X = X.reshape(-1, X.shape[-1]).float().to(W.device)
    if X.shape[1] != W.shape[1] or s_x.numel() != W.shape[1]:
        raise ValueError(f"W is {tuple(W.shape)} but X has {X.shape[1]} channels and s_x {s_x.numel()}")
    ref = X @ W.t()
    return search_scale(s_x, lambda s: float((X @ scaled_fake_quant(W, s, spec).t() - ref).pow(2).mean()), n_grid)


def _groups(W: torch.Tensor, spec: QuantSpec) -> int:
    if spec.granularity == "tensor":
        raise ValueError("AWQ's clipping search works per output row or group; a per-tensor grid has no such unit")
    if spec.granularity == "channel":
        return 1
    spec.check_shape(W.shape[1])
    return W.shape[1] // spec.group_size  # type: ignore[operator]


def sample_tokens(X: torch.Tensor, n_tokens: int = CLIP_TOKENS) -> torch.Tensor:
    """Every ``max(1, T // n_tokens)``-th row of ``X`` ``[T, K]``, at most ``n_tokens`` (the reference's stride)."""
    X = X.reshape(-1, X.shape[-1])
    return X[:: max(1, X.shape[0] // n_tokens)][:n_tokens]


@torch.no_grad()
def awq_clip(W: torch.Tensor, X: torch.Tensor, spec: QuantSpec, n_grid: int = N_GRID,
             max_shrink: float = MAX_SHRINK, n_tokens: int = CLIP_TOKENS) -> torch.Tensor:
    """The clipping bound ``m`` of every output row and group, ``[out, n_groups]`` (module docstring).

    Args:
        W: the (scaled) weight ``[out, K]``.
        X: its inputs ``[..., K]`` (scaled as the weight is); :func:`sample_tokens` picks ``n_tokens``.
        spec: the weight format (per channel or per group).
        n_grid, max_shrink: the shrink ratios tried are ``1 - i / n_grid`` for ``i < max_shrink * n_grid``.
    """
    if not 0.0 <= max_shrink < 1.0:
        raise ValueError(f"max_shrink must be in [0, 1), got {max_shrink!r}")
    W = W.float()
    G = _groups(W, spec)
    out, K = W.shape
    Xg = sample_tokens(X.float().to(W.device), n_tokens).reshape(-1, G, K // G)  # [T, G, g]
    bounds = []
    for r0 in range(0, out, CLIP_ROWS):
        w = W[r0:r0 + CLIP_ROWS]
        wg = w.reshape(w.shape[0], G, K // G)
        amax = wg.abs().amax(dim=-1)  # [rows, G]
        best, best_err = amax.clone(), torch.full_like(amax, float("inf"))
        for i in range(int(max_shrink * n_grid)):
            m = amax * (1 - i / n_grid)
            q = rtn(torch.maximum(torch.minimum(wg, m[..., None]), -m[..., None]).reshape_as(w), spec).weight
            d = (q.reshape_as(wg) - wg)
            err = torch.einsum("tgk,rgk->rtg", Xg, d).pow(2).mean(dim=1)  # [rows, G]
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, m, best)
        bounds.append(best)
    return torch.cat(bounds)


def apply_clip(W: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """``W`` with every group ``g`` of row ``r`` clamped to ``[-bound[r, g], bound[r, g]]``."""
    out, K = W.shape
    G = bound.shape[1]
    if bound.shape[0] != out or K % G:
        raise ValueError(f"clipping bounds {tuple(bound.shape)} do not fit a weight {tuple(W.shape)}")
    b = bound.to(W.device, W.dtype)[..., None]
    return torch.maximum(torch.minimum(W.reshape(out, G, K // G), b), -b).reshape(out, K)
