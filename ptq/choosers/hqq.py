"""HQQ: half-quadratic optimisation of the zero point (Badri & Shaji, 2023), a calibration-free chooser.

"Half-Quadratic Quantization of Large Machine Learning Models" (mobiusml, 2023; reference code
``hqq/core/optimize.py``, ``optimize_weights_proximal``). With the scale fixed by min-max, the
zero point of each unit (group, row or tensor) minimises a sparsity-promoting l_p error of the
dequantized weight, ``||W - scale (Q(W) - zero)||_p^p`` with ``p < 1``. Splitting the error off
as ``W_e`` (the half-quadratic trick) gives two closed-form steps, alternated ``iters`` times::

    W_q = clamp(round(W / scale + zero), 0, maxq)            # codes with the current zero
    W_r = scale (W_q - zero)                                 # dequantized
    W_e = shrink_lp(W - W_r, beta)                           # the error's sparse part
    zero = mean_unit(W_q - (W - W_e) / scale)                # the zero fitting the rest
    beta = kappa * beta

    shrink_lp(x, beta) = sign(x) relu(|x| - |x|^(p-1) / beta)   # generalised soft-thresholding

(the paper's Eq. 4-6, written with ptq's ``scale`` where the reference uses ``1 / scale``). The
reference's early stop is kept: the loop ends as soon as the mean ``|W - W_r|`` over the whole
tensor stops decreasing; unlike the reference, which returns the zero updated after that step,
the zero of the smallest error is returned.

The zero point is a real number: with ``spec.zero_dtype`` ``"float16"`` (what the reference
stores) or ``"float32"`` it is kept as such (rounded to float16 for the former, so that it is
stored losslessly); with ``"int"`` it is rounded to a code in ``[0, maxq]`` at the end.

A real-valued zero takes 0 off the grid: weights near 0 then move by up to half a step. Layers
whose inputs carry a few channels of very large activations (attention-sink tokens) keep their
weights on those channels near 0 (``v_proj``: the sink's value vector stays small), so at 3 bits
that error dominates the layer's output although the weight error is lower. ``hqq-int``
(:func:`hqq_int_qparams`) keeps integer zeros and moves the scale instead.
"""
from __future__ import annotations

import torch

from ptq.choosers.registry import register_qparams
from ptq.qparams import compute_qparams, grouped_view, minmax_qparams, reduce_minmax
from ptq.errors import PTQUserError
from ptq.spec import QuantSpec


def shrink_lp(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    """Generalised soft-thresholding ``sign(x) relu(|x| - |x|^(p-1) / beta)`` (the l_p proximal step;
    ``p = 1`` is soft-thresholding by ``1 / beta``)."""
    a = x.abs()
    if p == 1:
        return torch.sign(x) * torch.relu(a - 1.0 / beta)
    return torch.sign(x) * torch.relu(a - a.add(1e-8).pow(p - 1) / beta)


def check_solver_options(lp_norm: float, beta: float, kappa: float, iters: int) -> None:
    """One clear line for an option of the half-quadratic solver out of its range."""
    if not 0 < lp_norm <= 1:
        raise PTQUserError(f"lp_norm must be in (0, 1], got {lp_norm!r}")
    if not (beta > 0 and kappa >= 1):
        raise PTQUserError(f"beta must be positive and kappa at least 1, got beta={beta!r}, kappa={kappa!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise PTQUserError(f"iters must be a non-negative integer, got {iters!r}")


def initial_qparams(W: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max ``scale`` and the real-valued zero ``-xmin / scale`` (HQQ's start), spec shapes.

    A unit whose range :func:`ptq.qparams.compute_qparams` treats specially (constant or all
    zero) keeps that function's zero, which reconstructs it exactly.
    """
    int_spec = QuantSpec(bits=spec.bits, granularity=spec.granularity, group_size=spec.group_size,
                         include_zero=spec.include_zero, scale_dtype=spec.scale_dtype)
    xmin, xmax = reduce_minmax(W, spec)
    scale, zero = compute_qparams(xmin, xmax, int_spec)
    lo = xmin.clamp(max=0) if spec.include_zero else xmin
    special = xmin == xmax
    return scale, torch.where(special, zero, -lo.float() / scale)


@register_qparams("hqq", float_zero=True)
def hqq_qparams(
    W: torch.Tensor, spec: QuantSpec, importance: torch.Tensor | None = None,
    lp_norm: float = 0.7, beta: float = 10.0, kappa: float = 1.01, iters: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero)`` of a 2-D weight: min-max scale, zero by HQQ's solver (module docstring).

    Args:
        W: ``[rows, cols]``; spec: an asymmetric grid (its ``zero_dtype`` says how zeros are kept).
        importance: not used (HQQ needs no calibration data).
        lp_norm: ``p`` of the l_p error (the reference's 0.7); beta, kappa: the penalty and its
            growth per iteration (10, 1.01); iters: the most iterations (20).
    """
    if spec.symmetric:
        raise PTQUserError("hqq optimises the zero point; a symmetric grid fixes it: use an asymmetric grid")
    check_solver_options(lp_norm, beta, kappa, iters)
    scale, zero = initial_qparams(W, spec)
    shape = scale.shape
    units = grouped_view(W.float(), spec)
    units = units.reshape(-1, units.shape[-1])  # [n_units, unit_size]
    s, z = scale.reshape(-1, 1).float(), zero.reshape(-1, 1).float()
    best_z, best_err = z, float("inf")
    for _ in range(iters):
        W_q = torch.round(units / s + z).clamp_(0, spec.maxq)
        W_r = s * (W_q - z)
        err = float((units - W_r).abs().mean())
        if err >= best_err:
            break
        best_z, best_err = z, err
        W_e = shrink_lp(units - W_r, beta, lp_norm)
        z = (W_q - (units - W_e) / s).mean(dim=1, keepdim=True)
        beta *= kappa
    zero = best_z.reshape(shape)
    if spec.zero_dtype == "float16":
        zero = zero.clamp(-65504.0, 65504.0).half().float()
    elif spec.zero_dtype == "int":
        zero = zero.round().clamp(0, spec.maxq)
    return scale, zero


@register_qparams("hqq-int")
def hqq_int_qparams(
    W: torch.Tensor, spec: QuantSpec, importance: torch.Tensor | None = None,
    lp_norm: float = 0.7, beta: float = 10.0, kappa: float = 1.01, iters: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """HQQ's alternating solver with integer zero points and the scale optimised too (0 stays on the grid).

    Real-valued zeros (``hqq``) take 0 off the grid (module docstring). Here each unit keeps an
    integer zero, and each iteration adds the half-quadratic step for the scale (least squares on
    the sparse-error-corrected weight with the codes fixed) before the rounded zero step::

        W_q = clamp(round(W / scale) + zero, 0, maxq),  c = W_q - zero
        W_e = shrink_lp(W - scale c, beta)
        scale = <W - W_e, c> / <c, c>                            # float16 number if the spec says so
        zero = clamp(round(mean_unit(W_q - (W - W_e) / scale)), 0, maxq)
        beta = kappa * beta

    starting from min-max; each unit keeps the iterate of smallest squared error (min-max
    included, so it is never worse than ``minmax`` in that norm). Options as :func:`hqq_qparams`.
    """
    if spec.symmetric or spec.float_zero:
        raise PTQUserError("hqq-int optimises the scale and an integer zero point: use an asymmetric grid with "
                           "integer zeros")
    check_solver_options(lp_norm, beta, kappa, iters)
    scale, zero = minmax_qparams(W, spec)
    shape = scale.shape
    units = grouped_view(W.float(), spec)
    units = units.reshape(-1, units.shape[-1])
    s, z = scale.reshape(-1, 1).float(), zero.reshape(-1, 1).float()
    best_s, best_z, best_err = s, z, torch.full_like(s, float("inf"))
    for _ in range(iters + 1):
        W_q = (torch.round(units / s) + z).clamp_(0, spec.maxq)
        c = W_q - z
        err = (units - s * c).square().sum(dim=1, keepdim=True)
        better = err < best_err
        best_s, best_z = torch.where(better, s, best_s), torch.where(better, z, best_z)
        best_err = torch.where(better, err, best_err)
        W_e = shrink_lp(units - s * c, beta, lp_norm)
        cc = c.square().sum(dim=1, keepdim=True)
        fit = ((units - W_e) * c).sum(dim=1, keepdim=True) / cc.clamp(min=1e-30)
        s = torch.where(cc > 0, fit, s).clamp(min=2.0**-24)
        if spec.scale_dtype == "float16":
            s = s.clamp(max=65504.0).half().float()
        z = (W_q - (units - W_e) / s).mean(dim=1, keepdim=True).round().clamp(0, spec.maxq)
        beta *= kappa
    return best_s.reshape(shape), best_z.reshape(shape)
