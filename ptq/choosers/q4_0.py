"""llama.cpp's ``Q4_0`` grid as a qparams chooser, ``q4_0``: signed absmax to the most negative level.

ggml's reference quantizer (``ggml-quants.c`` ``quantize_row_q4_0_ref``; the ``gguf`` package's
``quants.Q4_0``), per block of 32 weights of one row::

    m = the block's value of largest |x| (the first one if several), sign kept
    d = m / -8                                         float32; stored as float16
    c = min(15, trunc(x * (1 / d) + 8.5))              code in 0..15 (1 / d in float32; 1 / 0 := 0)
    x ~ d (c - 8)                                      (ggml's dequantize_row_q4_0)

so ``m`` itself is the level ``c = 0`` (``x = -8 d``), and the grid reaches one step further on
``m``'s side than on the other (levels ``-8 d .. 7 d``). The same rule for ``b`` bits (here any
unit: group, row or tensor) uses ``half = 2**(b-1)`` for 8 and ``maxq = 2**b - 1`` for 15.

ptq's grid is ``scale (q - zero)`` with ``scale > 0`` and an integer ``zero``. ``Q4_0``'s signed ``d``
is that grid with ``scale = |d|`` and

* ``d > 0`` (``m < 0``): ``zero = half``,     ``q = c``
* ``d < 0`` (``m > 0``): ``zero = half - 1``, ``q = maxq - c``  (``d (c - half) = |d| (q - zero)``)

Keeping ``scale > 0`` and putting the sign into the zero point (one of two integer codes) leaves
every consumer of ``(scale, zero)`` unchanged: packing, ``QuantLinear``, GPTQ's clamp, the
compressed-tensors / GPTQ exporters and the footprint; a signed scale would have to be taught to
all of them. The GGUF exporter turns ``zero = half - 1`` back into a negative ``d``
(:mod:`ptq.checkpoint.gguf_blocks`). The spec must be asymmetric (per-unit zeros are stored).

The reference chooses the codes with the float32 ``d`` and stores ``d`` in float16, so a few codes
are not the nearest on the stored grid; :func:`q4_0_codes` reproduces its rounding exactly
(float32 product and sum, ``trunc``), and RTN uses it (the chooser's ``rounding``), which makes
ptq's RTN ``q4_0`` byte for byte the ``gguf`` package's ``Q4_0``. GPTQ rounds to the nearest level
of the stored grid, as it does for every chooser.
"""
from __future__ import annotations

import torch

from ptq.choosers.registry import register_qparams
from ptq.errors import PTQUserError
from ptq.qparams import _check_finite, grouped_view
from ptq.spec import QuantSpec

FP16_MAX = 65504.0
FP16_TINY = 2.0**-24  # smallest float16 subnormal: a stored scale is never 0


def signed_absmax_d(W: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``d = m / -half`` per unit in float32, ``m`` the unit's first value of largest ``|x|`` (``[n_units]``)."""
    units = grouped_view(W.float(), spec)
    units = units.reshape(-1, units.shape[-1])
    _check_finite(units, "the tensor to quantize")
    i = units.abs().argmax(dim=1, keepdim=True)  # the first maximal index, as numpy's argmax
    m = units.gather(1, i).squeeze(1)
    return m / -float(1 << (spec.bits - 1))


def _check_spec(spec: QuantSpec) -> None:
    if spec.symmetric or spec.float_zero or spec.codebook:
        raise PTQUserError("qparams q4_0 puts the sign of Q4_0's d into an integer zero point (2^(b-1) or "
                           "2^(b-1) - 1 per group): use an asymmetric grid (no --symmetric) with integer zeros")


def _stored_scale(d: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``|d|`` as stored: a float16 number (``scale_dtype="float16"``, Q4_0's ``d``) or float32, never 0."""
    s = d.abs()
    if spec.scale_dtype == "float16":
        s = s.clamp(max=FP16_MAX).half().float()
    s = s.clamp(min=FP16_TINY)
    return torch.where(d == 0, torch.ones_like(s), s)  # an all-zero unit: any scale, zero = half gives 0


def q4_0_codes(W: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """ptq codes (uint8 ``[rows, cols]``) of the reference's rounding on the :func:`q4_0_qparams` grid.

    ``c = clamp(trunc(x * id + (half + 0.5)), 0, maxq)`` with ``id = 1 / d`` (0 for ``d = 0``), every
    operation rounded to float32, as the ``gguf`` package (0.19) computes it (``trunc`` of a value of
    at least 0.5 is round half up); then ``q = c`` (``d >= 0``) or ``maxq - c`` (``d < 0``).
    """
    _check_spec(spec)
    d = signed_absmax_d(W, spec).unsqueeze(1)  # [n_units, 1]
    id_ = torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))
    units = grouped_view(W.float(), spec)
    units = units.reshape(-1, units.shape[-1])
    half = float(1 << (spec.bits - 1))
    c = (units * id_ + (half + 0.5)).trunc().clamp(0, spec.maxq)
    q = torch.where(d < 0, spec.maxq - c, c)
    return q.reshape(W.shape).to(torch.uint8)


@register_qparams("q4_0", rounding=q4_0_codes)
def q4_0_qparams(W: torch.Tensor, spec: QuantSpec,
                 importance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero)`` of llama.cpp's ``Q4_0`` rule (module docstring): ``scale = |d|`` (float16 number when
    ``spec.scale_dtype`` is float16), ``zero = half`` for ``d >= 0``, ``half - 1`` for ``d < 0``; spec shapes.

    ``Q4_0`` itself is ``bits=4``, groups of 32, float16 scales. ``importance`` is not used.
    """
    _check_spec(spec)
    d = signed_absmax_d(W, spec)
    half = float(1 << (spec.bits - 1))
    zero = torch.where(d < 0, torch.full_like(d, half - 1), torch.full_like(d, half))
    shape = grouped_view(W, spec).shape[:-1] if spec.granularity == "group" else (-1, 1)
    return _stored_scale(d, spec).reshape(shape), zero.reshape(shape)
