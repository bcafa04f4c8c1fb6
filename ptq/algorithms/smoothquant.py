"""SmoothQuant (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for
Large Language Models", ICML 2023): migrate activation outliers into the weights.

For a group of linear layers reading the same input ``X`` (``[tokens, K]``), with weights ``W``
(``[out, K]`` each), §4 "SmoothQuant" rewrites ``Y = X W^T = (X diag(s)^-1) (W diag(s))^T`` with
the per-input-channel smoothing factors

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)                                        (Eq. 4)

where ``max|W_j|`` is the largest ``|W[:, j]|`` over every layer of the group and ``alpha`` the
migration strength (0.5 in the paper for most models). ``diag(s)^-1`` is folded offline into the
operation producing ``X``: the preceding norm's weight (and bias) for norm -> q/k/v and
norm -> gate/up (LayerNorm / RMSNorm scale each channel), or the output rows of the preceding
linear layer when the path in between is positively homogeneous per channel (v -> o through
the attention probabilities, up -> down through ``act(gate) * up``, OPT's fc1 -> fc2 through
ReLU), see :mod:`ptq.algorithms.smoothing_groups`.

Clamp (as the reference ``smooth_lm``): ``max|X_j|`` and ``max|W_j|`` are clamped to at least
``1e-5`` before the powers, and ``s`` to ``[1e-5, 1e5]``, so that zero-activation or zero-weight
channels never divide by zero and the folded norm weights stay finite.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ptq.algorithms.smoothing_groups import SmoothGroup, SmoothingPlan, apply_smoothing, smoothing_groups
from ptq.layers import linear_weight
from ptq.errors import PTQUserError

CLAMP_MIN = 1e-5
CLAMP_MAX = 1e5

__all__ = ["SmoothGroup", "SmoothingPlan", "apply_smoothing", "check_alpha", "group_weight_absmax",
           "smooth_scales", "smoothing_groups"]


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float, ``ValueError`` unless it is a number in ``[0, 1]``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise PTQUserError(f"alpha (SmoothQuant migration strength) must be a number from 0 to 1, got {alpha!r}")
    return float(alpha)


def group_weight_absmax(linears: Iterable[nn.Module]) -> torch.Tensor:
    """``max|W_j|`` per input channel ``j`` over all the layers' weights, float32 ``[K]``."""
    return torch.stack([linear_weight(m).float().abs().amax(dim=0) for m in linears]).amax(dim=0)


def smooth_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """Smoothing factors ``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` (Eq. 4), clamped (see module doc).

    Args:
        act_absmax: ``max|X_j|`` per input channel ``[K]`` (the ``absmax-per-channel`` observer), or
            another per-channel size of the activations, e.g. their RMS for per-token activations
            (``rms-per-channel``).
        weight_absmax: ``max|W_j|`` per input channel ``[K]`` (:func:`group_weight_absmax`).
        alpha: migration strength in ``[0, 1]``; 0 leaves the activations' scale to the weights'
            range only, 1 moves all of the activation range into the weights.
    """
    alpha = check_alpha(alpha)
    a, w = act_absmax.float(), weight_absmax.float().to(act_absmax.device)
    if a.shape != w.shape or a.dim() != 1:
        raise PTQUserError(f"act_absmax and weight_absmax must both be [K], got {tuple(a.shape)} and {tuple(w.shape)}")
    for t, what in ((a, "activation"), (w, "weight")):
        if not bool(torch.isfinite(t).all()):
            raise PTQUserError(f"the {what} absmax contains inf or NaN; SmoothQuant needs finite statistics")
    s = a.clamp(min=CLAMP_MIN).pow(alpha) / w.clamp(min=CLAMP_MIN).pow(1.0 - alpha)
    return s.clamp(CLAMP_MIN, CLAMP_MAX)
