"""The layer-wise Hessian of GPTQ: :class:`HessianAccumulator`.

For a linear layer ``y = x W^T`` the layer-wise reconstruction error
``||X W^T - X Q^T||_F^2`` of GPTQ (Frantar et al., 2022, Sec. 2 "Layer-wise
quantization") is a quadratic in each row of ``W`` with Hessian ``H = 2 X^T X``.
We keep the mean over the ``n`` input rows (tokens) seen so far::

    H = 2/n * sum_t x_t x_t^T

as a running average, numerically stable in float32 like the reference
``GPTQ.add_batch``: for a batch ``X`` of ``m`` rows, ``H <- n/(n+m) H + 2/(n+m) X^T X``.

``n`` counts rows (tokens) of ``x`` reshaped to ``[-1, in_features]``, so ``[B, S, in]``
and ``[B*S, in]`` give the same ``H``. The reference counts sequences instead, so its ``H``
(and its printed error) is ``seqlen`` times ours; GPTQ's quantized weights do not depend on
this scale (damping is relative to ``mean(diag(H))``).

Only the upper triangle is accumulated, in horizontal strips ``H[i:i+b, i:] += X_i^T X[:, i:]``
(one matmul each, ~56% of the full product's flops with 8 strips); the lower triangle is
mirrored when ``H`` is read. (BLAS ``syrk`` through scipy halves the flops too, but its
OpenBLAS threads spin after each call and slow down torch's own threads on a small CPU.)

``products="bfloat16"`` computes each strip's ``X_i^T X`` as a bfloat16 matmul (the CPU's native
bf16 dot products: AVX-512 BF16 / AMX), for inputs that are bfloat16 already (calibration passes
under bf16 autocast): every product ``x_ti x_tj`` is exact and the GEMM sums in float32, but its
result is rounded to bfloat16 (relative error at most ``2^-9``) once per chunk of ``PRODUCT_ROWS``
tokens before it joins the float32 running sum, so over ``c`` chunks an entry of ``H`` carries a
random relative error of about ``2^-9 / sqrt(3 c)``.
"""
from __future__ import annotations

import torch

MAX_STRIPS = 8  # strips of the upper triangle per update
MIN_STRIP = 64  # columns per strip at least
PRODUCT_ROWS = 512  # tokens per bfloat16 product (one rounding of its sum to bfloat16 each)
PRODUCTS = {"exact": None, "bfloat16": torch.bfloat16}  # the dtype of the X^T X matmuls (None: H's own)


def _raise_non_finite(X: torch.Tensor) -> None:
    bad = "NaN" if torch.isnan(X).any() else "inf" if torch.isinf(X).any() else "values whose squares overflow"
    raise ValueError(
        f"layer input contains {bad}; the GPTQ Hessian needs finite activations "
        "(float16 overflow or a broken earlier step?)"
    )


def clip_token_norms(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Scale down the tokens of ``x [..., seq, in]`` whose norm exceeds ``ratio`` x their sequence's median.

    ``x_t <- x_t * min(1, ratio * median_s ||x_s|| / ||x_t||)``, the median over dimension -2
    (the tokens of one sequence; a 2-D ``x`` is one sequence), so the result does not depend
    on how sequences are batched. A few "massive activation" tokens (Sun et al., 2024: the
    first token of a sequence, an attention sink, reaches |x| in the thousands at the input of
    some MLP down-projections) otherwise make up nearly all of ``H = 2/n sum x x^T`` there,
    and GPTQ then fits those few tokens at the expense of all the others.
    """
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # [..., seq, 1]
    limit = ratio * norms.median(dim=-2, keepdim=True).values
    factor = torch.where(norms > limit, limit / norms.clamp_min(torch.finfo(x.dtype).tiny), torch.ones_like(norms))
    return x * factor


def shrink_to_diagonal(H: torch.Tensor, diag_shrink: float) -> torch.Tensor:
    """``H' = (1 - lambda) H + lambda diag(H)``: the off-diagonal of ``H`` scaled by ``1 - lambda``.

    Shrinkage of the input covariance towards its diagonal (the Ledoit-Wolf idea; cf. Sec. 3 of
    the GPTQ paper for ``H``). GPTQ's error compensation ``W[:, i+1:] -= err_i [H^-1]_{i, i+1:}``
    exists only through the off-diagonal: ``lambda = 0`` is GPTQ, ``lambda = 1`` leaves no
    compensation (round-to-nearest; with act-order and groups, of groups of permuted columns),
    and in between the updates use only part of the
    correlations between input channels measured on the calibration text, the part least
    specific to it. ``diag(H')`` equals ``diag(H)``, so the damping ``damp * mean(diag H)`` and
    the act-order permutation are unchanged. Returns a new tensor; ``H`` is not modified.
    """
    if isinstance(diag_shrink, bool) or not isinstance(diag_shrink, (int, float)) or not 0 <= diag_shrink <= 1:
        raise ValueError(f"diag_shrink must be a number from 0 to 1, got {diag_shrink!r}")
    if H.dim() != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix, got shape {tuple(H.shape)}")
    out = H * (1.0 - diag_shrink)
    out.diagonal().copy_(torch.diagonal(H))
    return out


class HessianAccumulator:
    """Running ``H = 2/n * sum x x^T`` over the inputs ``x [..., in_features]`` of one layer.

    Args:
        in_features: the layer's input size (``H`` is ``[in_features, in_features]``).
        dtype: accumulation dtype, ``torch.float32`` (default, as the reference) or
            ``torch.float64``; inputs of any float dtype are converted to it.
        device: where ``H`` lives (default CPU).
        triangular: accumulate the upper triangle only (default); ``False`` uses one full matmul.
        token_clip: if set (> 1), a token whose input norm exceeds ``token_clip`` times the median
            token norm of its sequence is scaled down to that norm before it enters ``H``
            (see :func:`clip_token_norms`). ``None`` (default): every token as it is.
        products: ``"exact"`` (default): ``X^T X`` in ``dtype``; ``"bfloat16"``: as a bfloat16 matmul
            whose result is rounded once per ``PRODUCT_ROWS`` tokens (see the module docstring), for
            bf16 inputs on a CPU with native bf16 matmul. ``H`` is kept in ``dtype`` either way.
    """

    def __init__(
        self,
        in_features: int,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        triangular: bool = True,
        token_clip: float | None = None,
        products: str = "exact",
    ) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"Hessian dtype must be torch.float32 or torch.float64, got {dtype}")
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}")
        if token_clip is not None and not token_clip > 1:
            raise ValueError(f"token_clip must be a number above 1 (a multiple of the median token norm), got {token_clip!r}")
        if products not in PRODUCTS:
            raise ValueError(f"products must be one of {', '.join(PRODUCTS)}, got {products!r}")
        self.in_features = in_features
        self.dtype = dtype
        self.products = products
        self.token_clip = token_clip
        with torch.inference_mode(False):  # a normal tensor even when built inside inference mode
            self._H = torch.zeros(in_features, in_features, dtype=dtype, device=device)
        self.nsamples = 0
        self._triangular = triangular
        self._lower_stale = False  # only the upper triangle is up to date since the last read

    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x [..., in_features]`` (each row one input vector)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected inputs [..., {self.in_features}], got shape {tuple(x.shape)}")
        X = x.detach()
        if X.numel() == 0:
            return
        low = PRODUCTS[self.products]
        X = X.to(device=self._H.device, dtype=self.dtype if low is None or self.token_clip is not None else low)
        if self.token_clip is not None:
            X = clip_token_norms(X if X.dim() > 1 else X[None], self.token_clip)
        X = X.reshape(-1, self.in_features)
        m = X.shape[0]
        n = self.nsamples
        beta, alpha = n / (n + m), 2.0 / (n + m)
        if low is not None:
            self._add_low_precision(X.to(low), beta, alpha)
        elif self._triangular:
            k = self.in_features
            width = max(MIN_STRIP, -(-k // MAX_STRIPS))
            for i in range(0, k, width):  # H[i:i+w, i:] <- beta H[i:i+w, i:] + alpha X_i^T X[:, i:]
                self._H[i : i + width, i:].addmm_(X[:, i : i + width].t(), X[:, i:], beta=beta, alpha=alpha)
            self._lower_stale = True
        else:
            self._H.addmm_(X.t(), X, beta=beta, alpha=alpha)
        # a NaN / inf in row t, column j makes H_jj non-finite: O(in) instead of O(m * in) checking
        if not bool(torch.isfinite(torch.diagonal(self._H)).all()):
            _raise_non_finite(X)
        self.nsamples = n + m

    def _add_low_precision(self, X: torch.Tensor, beta: float, alpha: float) -> None:
        """``H <- beta H + alpha X^T X`` with the products in ``X``'s (low) dtype, a chunk of
        ``PRODUCT_ROWS`` rows at a time, each chunk's strips rounded once and added in ``H``'s dtype."""
        H = self._H
        H.mul_(beta)
        k = self.in_features
        width = max(MIN_STRIP, -(-k // MAX_STRIPS)) if self._triangular else k
        for r in range(0, X.shape[0], PRODUCT_ROWS):
            C = X[r : r + PRODUCT_ROWS]
            for i in range(0, k, width):
                H[i : i + width, i:].add_(torch.mm(C[:, i : i + width].t(), C[:, i:]), alpha=alpha)
        self._lower_stale = self._triangular

    def _symmetrize(self) -> None:
        """Fill the lower triangle from the upper one, in place, strip by strip (no ``in x in``
        temporary: for a 7B model's ``down_proj`` one is 485 MB)."""
        if self._lower_stale:
            H = self._H
            k = H.shape[0]
            width = max(MIN_STRIP, -(-k // MAX_STRIPS))
            with torch.no_grad():
                for i in range(0, k, width):
                    j = min(i + width, k)
                    H[j:, i:j] = H[i:j, j:].mT  # below the diagonal block: the strip to its right, transposed
                    block = H[i:j, i:j]
                    block.copy_(block.triu() + block.triu(1).mT)
            self._lower_stale = False

    @property
    def H(self) -> torch.Tensor:
        """The Hessian ``[in, in]`` (symmetric; the accumulator's own tensor, not a copy)."""
        self._symmetrize()
        return self._H

    def merge(self, other: "HessianAccumulator") -> "HessianAccumulator":
        """Add another accumulator's samples (e.g. from another process); returns ``self``."""
        if other.in_features != self.in_features:
            raise ValueError(f"cannot merge Hessians of {other.in_features} and {self.in_features} features")
        total = self.nsamples + other.nsamples
        if other.nsamples:
            self._symmetrize()
            self._H.mul_(self.nsamples / total).add_(
                other.H.to(device=self._H.device, dtype=self.dtype), alpha=other.nsamples / total
            )
            self.nsamples = total
        return self

    def __repr__(self) -> str:
        products = "" if self.products == "exact" else f", products={self.products!r}"
        return f"HessianAccumulator(in_features={self.in_features}, nsamples={self.nsamples}, dtype={self.dtype}{products})"
