"""GPTQ: accurate post-training quantization of a weight with its layer Hessian.

Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers" (2022). For a linear layer with inputs ``X`` GPTQ
minimises ``||X W^T - X Q^T||_F^2``, i.e. ``sum_rows (w - q) H (w - q)^T / 2`` with
``H = 2 X^T X`` (:class:`ptq.algorithms.hessian.HessianAccumulator`), one input column at
a time (the Optimal Brain Quantizer step, Sec. 3, Eq. 2-3)::

    q_i   = quant(w_i)                            # column i on its grid
    err_i = (w_i - q_i) / [H^-1]_ii
    W[:, i+1:] -= err_i  [H^-1]_{i, i+1:}         # compensate with the columns not yet done

with ``[H^-1]_{i, i:}`` the row ``i`` of the upper Cholesky factor of ``H^-1`` (Sec. 3
"Step 3: Cholesky reformulation"), whose rows are exactly the inverse Hessians of the
remaining columns after ``i`` steps of elimination. The loss of column ``i`` is
``(w_i - q_i)^2 / [H^-1]_ii / 2 = err_i^2 / 2`` (the reference's ``Losses``).

Implementation as the reference (IST-DASLab/gptq, ``GPTQ.fasterquant``):

* lazy batch updates (Sec. 3 "Step 2"): columns are processed in blocks of ``blocksize``;
  inside a block the updates are rank-1, the rest of the matrix is updated once per block
  with ``W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]``;
* damping ``H += damp * mean(diag(H)) * I``; dead inputs (``H_ii = 0``) get ``H_ii = 1``
  and a zero weight column;
* ``act_order``: columns in order of decreasing ``H_ii`` (the "act-order" heuristic); the
  result is permuted back and ``g_idx[j]`` tells the group of column ``j``;
* groups (``granularity="group"``): a group's ``(scale, zero)`` is computed when its first
  column is reached, from the error-updated weights of its columns; with ``static_groups``
  all groups are computed beforehand from ``W`` (in column order, before any
  permutation), so ``g_idx[j] = j // group_size`` even with act-order. Unlike the
  reference, a group starting inside a block sees the updates of the block's earlier
  columns too, so the result does not depend on ``blocksize``;
* ``qparams``: the registered chooser of each (scale, zero) (:mod:`ptq.choosers`), called on
  the whole weight (tensor / channel) or per group on the group's current (error-updated)
  columns, with ``importance = diag(H)`` of those columns. ``"mse"`` is the reference's grid
  search (``Quantizer(mse=True)``); ``"mse-weighted"`` (not in the paper) weighs each
  column's error in that search by ``H_jj``, the energy of its input channel, as llama.cpp's
  "importance matrix" does, so the range is clipped where the inputs are small, not where
  they carry the layer's outlier features. ``"hqq"`` gives real-valued zero points
  (``spec.zero_dtype`` float), quantized as ``clamp(round(w / scale + zero), 0, maxq)``.

Internally the weight is held transposed (a column of ``W`` is a contiguous row), in float32
unless ``W`` or ``H`` is float64.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Callable

import torch

from ptq.algorithms.result import QuantizedWeight
from ptq.algorithms.rtn import rtn
from ptq.choosers import QParamsChooser, get_qparams, legacy_qparams
from ptq.kernels.finite import all_finite
from ptq.spec import QuantSpec

BLOCKSIZE = 128  # columns per lazy-batch block (the reference's default)
DAMP = 0.01  # damping as a fraction of mean(diag H) (the reference's percdamp)
MAX_DAMP = 1.0  # largest relative damping tried before falling back to RTN
SUB = 16  # columns per sub-block of the inner loop (speed only)


def inverse_cholesky(H: torch.Tensor, damp: float, overwrite: bool = False) -> tuple[torch.Tensor, float] | None:
    """Upper Cholesky factor of ``(H + d I)^-1``, ``d = damp * mean(diag(H))``.

    If ``H + d I`` (or its inverse, numerically) is not positive definite, the relative
    damping is raised ten-fold up to :data:`MAX_DAMP`. Returns the factor and the relative
    damping used, or ``None`` if no damping worked. ``H`` is not modified unless ``overwrite``
    (then it is used as the work matrix and the factor is returned in its memory). The damping
    is added to the diagonal in place, never through an ``n x n`` identity, and ``L`` becomes the
    factor in place (``L -> L^-T L^-1 -> U``, LAPACK's ``potri`` and ``potrf``), so two ``n x n``
    matrices are live at the peak (``H`` and ``L``; three without ``overwrite``) and one, the
    factor, afterwards: for a 7B model's ``down_proj`` (``n = 11008``) one matrix is 485 MB.
    """
    mean_diag = float(torch.diagonal(H).mean())
    A = H if overwrite else H.clone()
    diag = torch.diagonal(A).clone()
    info = torch.empty((), dtype=torch.int32, device=A.device)
    rel = damp
    while True:
        torch.diagonal(A).copy_(diag).add_(rel * mean_diag)
        L, ok = torch.linalg.cholesky_ex(A)
        if int(ok) == 0:
            torch.cholesky_inverse(L, out=L)  # (H + d I)^-1, in place
            torch.linalg.cholesky_ex(L, upper=True, out=(L, info))  # its upper factor, in place
            if int(info) == 0 and all_finite(L):
                return A.copy_(L), rel  # the factor in the work matrix's memory; L is freed
        del L
        if rel >= MAX_DAMP:
            return None
        rel = min(max(rel, 1e-6) * 10, MAX_DAMP)


def _check_inputs(
    W: torch.Tensor, H: torch.Tensor, spec: QuantSpec, blocksize: int, damp: float, static_groups: bool
) -> None:
    if W.dim() != 2:
        raise ValueError(f"expected a 2-D [out_features, in_features] weight, got shape {tuple(W.shape)}")
    n = W.shape[1]
    if tuple(H.shape) != (n, n):
        raise ValueError(f"the Hessian must be [{n}, {n}] for a weight with {n} input columns, got {tuple(H.shape)}")
    if not torch.isfinite(H).all():
        raise ValueError("the Hessian contains NaN or inf (non-finite calibration activations?)")
    if not torch.isfinite(W).all():
        raise ValueError("the weight contains NaN or inf")
    if blocksize < 1:
        raise ValueError(f"blocksize must be positive, got {blocksize}")
    if not damp >= 0:
        raise ValueError(f"damp must be non-negative, got {damp}")
    if static_groups and spec.granularity != "group":
        raise ValueError("static_groups needs granularity 'group' with a group_size")
    if spec.codebook:
        raise ValueError(f"GPTQ quantizes to the integer grid scale * (q - zero); format {spec.format!r} is not supported")
    spec.check_shape(n)


def gptq(
    W: torch.Tensor,
    H: torch.Tensor,
    spec: QuantSpec,
    blocksize: int = BLOCKSIZE,
    damp: float = DAMP,
    act_order: bool = False,
    static_groups: bool = False,
    mse: bool = False,
    mse_weighted: bool = False,
    qparams: str | QParamsChooser = "minmax",
    qparams_args: dict[str, Any] | None = None,
    overwrite_H: bool = False,
) -> QuantizedWeight:
    """Quantize ``W [out, in]`` with GPTQ given the Hessian ``H [in, in]`` of its inputs.

    Args:
        W: the weight (any float dtype; not modified).
        H: ``2/n sum x x^T`` of the layer inputs (any positive scale works).
        spec: the grid; per-tensor, per-channel or per-group (``group_size`` must divide ``in``).
        blocksize: columns per lazy-batch block (speed only; results do not depend on it).
        damp: relative dampening, ``damp * mean(diag(H))`` is added to ``diag(H)`` (``percdamp``).
        act_order: quantize columns in order of decreasing ``diag(H)``.
        static_groups: with groups, fix every group's qparams before quantizing.
        mse, mse_weighted: deprecated spellings of ``qparams="mse"`` / ``"mse-weighted"``
            (a ``DeprecationWarning``; to be removed in the next release).
        qparams: name of a registered chooser (:func:`ptq.choosers.get_qparams`: ``minmax``,
            ``mse``, ``mse-weighted``, ``hqq``, ...) or a chooser; it gets ``importance = diag(H)``.
        qparams_args: the chooser's options (e.g. ``{"grid": 50}``).
        overwrite_H: ``H`` (in the solve's dtype and on ``W``'s device) may be used as the work matrix
            and is destroyed: one ``in x in`` copy fewer (a caller done with ``H``, as the last layer
            reading a Hessian; scipy's ``overwrite_a``). The result is the same.

    Returns:
        :class:`QuantizedWeight` with the float32 dequantized weight, ``scale`` / ``zero`` of
        the spec's shapes (groups in group order), ``g_idx`` (int32 ``[in]``, groups only),
        ``loss = sum err^2 / 2`` and ``info``: ``damp`` (the relative damping used),
        ``dead_columns``, ``seconds_inverse`` / ``seconds_loop`` (timings), and
        ``fallback="rtn"`` (with a ``RuntimeWarning``) if ``H`` could not be made positive definite.
    """
    _check_inputs(W, H, spec, blocksize, damp, static_groups)
    grouped = spec.granularity == "group"
    dtype = torch.float64 if torch.float64 in (W.dtype, H.dtype) else torch.float32
    legacy = legacy_qparams(mse, mse_weighted)
    if legacy is not None:
        warnings.warn(f"gptq(mse=..., mse_weighted=...) is deprecated; pass qparams={legacy!r}",
                      DeprecationWarning, stacklevel=2)
        if qparams not in ("minmax", legacy):
            raise ValueError(f"mse/mse_weighted ask for qparams {legacy!r} but qparams={qparams!r} was given")
        qparams = legacy
    chooser = get_qparams(qparams)
    chooser.check_options(dict(qparams_args or {}))
    W = W.detach().to(dtype, copy=True)
    H = H.detach().to(device=W.device, dtype=dtype, copy=not overwrite_H).contiguous()
    qparams_fn = _with_importance(chooser, torch.diagonal(H).clone(), dict(qparams_args or {}))
    out, n = W.shape
    g = spec.group_size if grouped else n
    assert g is not None

    scale = zero = None
    if not grouped:  # as the reference: row / tensor qparams of W before dead columns are zeroed
        scale, zero = qparams_fn(W, spec)
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    info: dict[str, Any] = {"dead_columns": int(dead.sum())}
    if static_groups:
        scale, zero = qparams_fn(W, spec)
    g_idx = (torch.arange(n, device=W.device) // g).to(torch.int32) if grouped else None

    perm = torch.argsort(torch.diagonal(H), descending=True, stable=True) if act_order else None
    if perm is not None:  # H <- H[perm][:, perm] in H's memory (one n x n temporary)
        rows = H[perm]
        torch.index_select(rows, 1, perm, out=H)
        del rows
    t0 = time.perf_counter()
    factor = inverse_cholesky(H, damp, overwrite=True)  # H is this call's own (a copy, or given away)
    del H  # the factor is in its memory now
    info["seconds_inverse"] = time.perf_counter() - t0
    if factor is None:
        warnings.warn(
            f"GPTQ: the Hessian [{n}x{n}] is not positive definite even with damping {MAX_DAMP} x mean(diag); "
            "falling back to round-to-nearest for this weight",
            RuntimeWarning,
            stacklevel=2,
        )
        if scale is None or zero is None:
            scale, zero = qparams_fn(W, spec)
        fb = rtn(W, spec, scale, zero)
        info.update(fallback="rtn", reason="Hessian not positive definite after damping")
        return dataclasses.replace(fb, g_idx=g_idx, info=info)
    Hinv, info["damp"] = factor

    Wt = W.t()[perm].contiguous() if perm is not None else W.t().contiguous()  # [n, out]: column i is row i
    device = W.device
    del W  # the loop reads Wt only
    col_scale = col_zero = None
    if static_groups:  # each (permuted) column's fixed group qparams, [n, out]
        assert scale is not None and zero is not None
        col_group = (perm if perm is not None else torch.arange(n, device=device)) // g
        col_scale, col_zero = scale.t()[col_group].to(dtype), zero.t()[col_group].to(dtype)
    t0 = time.perf_counter()
    row_spec = dataclasses.replace(spec, granularity="channel", group_size=None)

    def group_qparams(Wg: torch.Tensor, c0: int) -> tuple[torch.Tensor, torch.Tensor]:
        """qparams per row of the current columns ``Wg [out, g]``, (permuted) columns ``c0..c0+g``."""
        return qparams_fn(Wg, row_spec, slice(c0, c0 + g) if perm is None else perm[c0 : c0 + g])

    Qt, row_loss, group_scales, group_zeros = _column_loop(
        Wt, Hinv, spec, blocksize, group_qparams, scale=scale, zero=zero,
        group_size=g if grouped and not static_groups else None, col_scale=col_scale, col_zero=col_zero,
    )
    info["seconds_loop"] = time.perf_counter() - t0
    if grouped and not static_groups:
        scale, zero = torch.stack(group_scales, 1), torch.stack(group_zeros, 1)  # [out, n/g] in group order
        if perm is not None:
            assert g_idx is not None
            g_idx = (torch.argsort(perm) // g).to(torch.int32)
    if perm is not None:
        Qt = Qt[torch.argsort(perm)]
    assert scale is not None and zero is not None
    return QuantizedWeight(
        weight=Qt.t().contiguous().float(), scale=scale.float(), zero=zero.float(), spec=spec,
        g_idx=g_idx, loss=float(row_loss.sum()), info=info,
    )


def _with_importance(
    chooser: QParamsChooser, diag_H: torch.Tensor, options: dict[str, Any]
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``chooser`` on ``x`` with ``importance = diag_H[cols]`` (all columns by default)."""

    def fn(x: torch.Tensor, spec: QuantSpec, cols: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        return chooser(x, spec, importance=diag_H[cols].to(x.dtype), **options)

    return fn


def _column_loop(
    Wt: torch.Tensor,
    Hinv: torch.Tensor,
    spec: QuantSpec,
    blocksize: int,
    group_qparams: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]],
    scale: torch.Tensor | None,
    zero: torch.Tensor | None,
    group_size: int | None,
    col_scale: torch.Tensor | None,
    col_zero: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """The blocked GPTQ loop on the transposed weight ``Wt [n, out]`` (changed in place).

    Per-row (tensor / channel) qparams come as ``scale`` / ``zero``; static groups as
    per-column ``col_scale`` / ``col_zero [n, out]``; dynamic groups (``group_size``) are
    computed here by ``group_qparams(W_group [out, g], first column)``. Returns ``Qt [n, out]``, the loss per output row, and the dynamic
    groups' scales / zeros (``[out]`` each, in order).

    Inside a block the rank-1 updates only touch the current sub-block of :data:`SUB`
    columns; the rest of the block is updated once per sub-block by a small matmul (the
    lazy batch update of Sec. 3 applied at two levels), which keeps each column's work to a
    handful of vector operations. ``q = scale * clamp(round(w / scale), -zero, maxq - zero)``
    equals ``scale * (clamp(round(w / scale) + zero, 0, maxq) - zero)`` exactly (integer zero);
    real-valued zeros (``spec.float_zero``) round ``w / scale + zero`` instead.
    """
    n, out = Wt.shape
    float_zero = spec.float_zero
    dtype = Wt.dtype
    maxq = float(spec.maxq)
    Qt = torch.empty_like(Wt)
    Losses = torch.zeros(out, dtype=dtype, device=Wt.device)
    group_scales: list[torch.Tensor] = []
    group_zeros: list[torch.Tensor] = []
    s = lo = hi = None
    if scale is not None and zero is not None and col_scale is None:
        s, lo = scale.reshape(-1).to(dtype), -zero.reshape(-1).to(dtype)  # [out] or [1]
        hi = lo + maxq
    if col_scale is not None and col_zero is not None:
        col_lo = -col_zero
        col_hi = col_lo + maxq
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        count = i2 - i1
        W1 = Wt[i1:i2]  # a view: the block's columns, updated in place
        Q1 = Qt[i1:i2]
        Err1 = torch.empty_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diagonal(Hinv1).clone().unbind(0)  # 0-d tensors: no scalar conversion per column
        Wr, Qr, Er = W1.unbind(0), Q1.unbind(0), Err1.unbind(0)
        if col_scale is not None:
            Sr, Lr, Hr = col_scale[i1:i2].unbind(0), col_lo[i1:i2].unbind(0), col_hi[i1:i2].unbind(0)
        for j1 in range(0, count, SUB):
            j2 = min(j1 + SUB, count)
            for i in range(j1, j2):
                if group_size is not None and (i1 + i) % group_size == 0:
                    Wg = _current_columns(Wt, W1, Err1, Hinv, i1, j1, j2, i, group_size)
                    gs, gz = group_qparams(Wg.t(), i1 + i)
                    group_scales.append(gs.reshape(-1))
                    group_zeros.append(gz.reshape(-1))
                    s, lo = gs.reshape(-1).to(dtype), -gz.reshape(-1).to(dtype)
                    hi = lo + maxq
                elif col_scale is not None:
                    s, lo, hi = Sr[i], Lr[i], Hr[i]
                w, q, err = Wr[i], Qr[i], Er[i]
                if float_zero:  # q = scale * (clamp(round(w / scale + zero), 0, maxq) - zero)
                    torch.div(w, s, out=q).sub_(lo).round_().clamp_(0, maxq).add_(lo).mul_(s)
                else:
                    torch.div(w, s, out=q).round_().clamp_(lo, hi).mul_(s)
                torch.sub(w, q, out=err).div_(d[i])  # err = (w - q) / [H^-1]_ii
                if i + 1 < j2:
                    W1[i + 1 : j2].addr_(Hinv1[i, i + 1 : j2], err, alpha=-1)
            if j2 < count:  # the sub-block's update of the rest of the block
                W1[j2:].addmm_(Hinv1[j1:j2, j2:].t(), Err1[j1:j2], alpha=-1)
        Losses += Err1.square().sum(0) / 2
        if i2 < n:  # lazy batch update of all later columns
            Wt[i2:].addmm_(Hinv[i1:i2, i2:].t(), Err1, alpha=-1)
    return Qt, Losses, group_scales, group_zeros


def _current_columns(
    Wt: torch.Tensor, W1: torch.Tensor, Err1: torch.Tensor, Hinv: torch.Tensor,
    i1: int, j1: int, j2: int, i: int, g: int,
) -> torch.Tensor:
    """Fully error-updated columns ``[i1+i, i1+i+g)`` (as rows ``[g, out]``) at column ``i1+i``.

    Columns of the current sub-block ``[j1, j2)`` are up to date; later columns of the block
    lack the updates from ``[j1, i)``, columns after the block those from the whole
    ``[0, i)``; the pending products are applied here (to copies).
    """
    count = W1.shape[0]
    col, end = i1 + i, i1 + i + g
    parts = [W1[i : min(i + g, j2)]]
    if i + g > j2:
        b = min(i + g, count)
        parts.append(W1[j2:b] - Hinv[i1 + j1 : col, i1 + j2 : i1 + b].t() @ Err1[j1:i])
    if i + g > count:
        parts.append(Wt[i1 + count : end] - Hinv[i1:col, i1 + count : end].t() @ Err1[:i])
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)
