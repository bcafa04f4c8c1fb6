"""Standard errors over evaluation windows, and when a difference is inside the noise.

Tokens of one window are strongly correlated (same passage, same context), so the unit of
sampling is the **window**, not the token: a figure averaged over tokens is a ratio
estimator ``m = sum_w s_w / sum_w n_w`` (``s_w`` the window's sum, ``n_w`` its scored tokens),
and its standard error is the cluster (ratio-estimator) one

    SE(m)^2 = W / (W - 1) * sum_w n_w^2 (x_w - m)^2 / (sum_w n_w)^2,     x_w = s_w / n_w,

which for equal window sizes is ``std(x_w) / sqrt(W)``. (llama.cpp's ``perplexity`` treats
tokens as independent, which understates the SE.)

Perplexity ``ppl = exp(m)`` gets its SE by the delta method: ``SE(ppl) = ppl * SE(m)``.
The difference of two perplexities measured on the **same** windows is paired: the delta
method on ``(m_a, m_b)`` gives ``d(ppl_a - ppl_b) = ppl_a dm_a - ppl_b dm_b``, i.e. the SE of the
window series ``g_w = ppl_a x_{a,w} - ppl_b x_{b,w}``; the window-to-window variation of the text
cancels, so it is much tighter than either SE. On different windows the two are independent:
``SE = sqrt(SE_a^2 + SE_b^2)``. A difference is "within noise" when ``|d| < 2 SE`` (about a 95 %
two-sided band).
"""
from __future__ import annotations

import math
from typing import Sequence

NOISE_Z = 2.0


def mean_se(values: Sequence[float], counts: Sequence[int] | None = None) -> tuple[float, float | None]:
    """Token-weighted mean of per-window means ``values`` and its SE over windows (None for one window)."""
    n = len(values)
    if n == 0:
        raise ValueError("no windows")
    w = [1.0] * n if counts is None else [float(c) for c in counts]
    total = sum(w)
    m = sum(wi * x for wi, x in zip(w, values)) / total
    if n < 2:
        return m, None
    var = n / (n - 1) * sum((wi * (x - m)) ** 2 for wi, x in zip(w, values)) / total ** 2
    return m, math.sqrt(var)


def ppl_se(window_nll: Sequence[float], counts: Sequence[int]) -> tuple[float, float | None]:
    """Perplexity ``exp(mean NLL)`` and its delta-method SE from per-window mean NLLs."""
    m, se = mean_se(window_nll, counts)
    ppl = math.exp(m)
    return ppl, None if se is None else ppl * se


def paired_ppl_delta(nll_a: Sequence[float], nll_b: Sequence[float], counts: Sequence[int]) -> tuple[float, float | None]:
    """``ppl_a - ppl_b`` on the same windows and its paired SE (module docstring)."""
    if len(nll_a) != len(nll_b) or len(nll_a) != len(counts):
        raise ValueError("a paired difference needs the same windows on both sides")
    ppl_a, _ = ppl_se(nll_a, counts)
    ppl_b, _ = ppl_se(nll_b, counts)
    g = [ppl_a * a - ppl_b * b for a, b in zip(nll_a, nll_b)]
    _, se = mean_se(g, counts)
    return ppl_a - ppl_b, se


def unpaired_delta(a: float, se_a: float | None, b: float, se_b: float | None) -> tuple[float, float | None]:
    """``a - b`` of two independent estimates and ``sqrt(se_a^2 + se_b^2)``."""
    if se_a is None or se_b is None:
        return a - b, None
    return a - b, math.hypot(se_a, se_b)


def within_noise(delta: float, se: float | None, z: float = NOISE_Z) -> bool | None:
    """``|delta| < z * se`` (None when there is no SE to judge by)."""
    if se is None or not math.isfinite(delta):
        return None
    return abs(delta) < z * se
