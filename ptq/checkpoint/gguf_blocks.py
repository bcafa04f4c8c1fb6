"""llama.cpp's legacy block formats built from ptq's codes, exactly or not at all.

Blocks of 32 consecutive weights of one row (ggml ``QK4_0 = QK4_1 = QK8_0 = 32``), the scale ``d``
(and ``m``) in float16, dequantized by ggml in float32 as (``ggml-quants.c``
``dequantize_row_q4_0`` / ``_q4_1`` / ``_q8_0``)::

    Q4_0  18 bytes: d, qs[16]         x = d * (c - 8)     c in 0..15, qs[j] = c[j] | c[j + 16] << 4
    Q4_1  20 bytes: d, m, qs[16]      x = d * c + m       c in 0..15, same nibble order
    Q8_0  34 bytes: d, c[32] (int8)   x = d * c           c in -128..127 (the reference quantizer
                                                          writes -127..127; -128 is valid)

ptq's weight is ``scale * (q - zero)``. With the block's ``scale`` a float16 number:
Q4_0 holds it with ``d = scale, c = q - zero + 8`` when every ``q - zero`` is in ``-8..7``
(every 4-bit symmetric grid, and any grid of 3 bits or fewer), and per block with a negative
``d = -scale, c = 8 - (q - zero)`` when they are in ``-7..8`` (llama.cpp's own rule puts a block's
largest weight on the -8 level, so a block whose largest weight is positive has ``d < 0``:
:mod:`ptq.choosers.q4_0`; Q8_0 likewise); Q8_0 with ``d = scale,
c = q - zero`` when ``q - zero`` is in ``-128..127`` (every 8-bit symmetric grid); Q4_1 with
``d = scale, c = q, m = -scale * zero`` when ``q <= 15`` and ``m`` is a float16 number. Then the
float32 value ggml computes equals ptq's (``d * c`` is exact in float32 for an 11-bit ``d``
and an 8-bit ``c``, and ``d * c + m = scale * (q - zero)`` is itself a float32 number). Each
block must lie in one (scale, zero) group. Anything else is refused with the reason
(:func:`misfit`); nothing is rounded a second time.
"""
from __future__ import annotations

import numpy as np
import torch

from ptq.checkpoint.layer_grid import LayerGrid
from ptq.errors import PTQUserError

BLOCK = 32
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}
QTYPES = tuple(BLOCK_BYTES)
_OFFSET = {"Q4_0": 8, "Q8_0": 0}
_RANGE = {"Q4_0": (0, 15), "Q4_1": (0, 15), "Q8_0": (-128, 127)}


def _blocks(p: torch.Tensor) -> torch.Tensor:
    """``[out, in]`` -> ``[out, in / 32, 32]``."""
    return p.reshape(p.shape[0], -1, BLOCK)


def _is_half(x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(x) & (x.half().float() == x)


def block_qparams(grid: LayerGrid) -> tuple[torch.Tensor, torch.Tensor] | str:
    """Per-block ``(scale, zero)`` ``[out, in / 32]``, or why the grid does not come in blocks of 32."""
    n = grid.codes.shape[1]
    if n % BLOCK:
        return f"its {n} input columns are not a multiple of the {BLOCK}-wide blocks"
    S, Z = _blocks(grid.expand(grid.scale)), _blocks(grid.expand(grid.zero))
    if not bool((S == S[..., :1]).all() and (Z == Z[..., :1]).all()):
        why = "act-order groups (g_idx)" if not grid.consecutive_groups else f"groups of {grid.spec.group_size}"
        return f"its {why} do not cover whole blocks of {BLOCK} consecutive columns"
    return S[..., 0], Z[..., 0]


def block_codes(grid: LayerGrid, qtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | str:
    """``(c [out, in], d [out, nb] float16, m [out, nb] float16 | None)`` of ``qtype``, or why it cannot hold ``grid``."""
    if qtype not in BLOCK_BYTES:
        raise PTQUserError(f"unknown GGUF block type {qtype!r} (known: {', '.join(QTYPES)})")
    qp = block_qparams(grid)
    if isinstance(qp, str):
        return qp
    s, z = qp
    if not bool(_is_half(s).all()):
        return "its scales are not float16 numbers (quantize with float16 scales, the default of rtn and gptq)"
    lo, hi = _RANGE[qtype]
    if qtype == "Q4_1":
        c = grid.codes
        m = -(s * z)
        if not bool(_is_half(m).all()):
            share = float((~_is_half(m)).float().mean())
            return (f"Q4_1 stores the block minimum m = -scale * zero in float16 and {share:.0%} of this grid's "
                    "minima are not float16 numbers")
    else:
        signed = _signed_blocks(grid, s, qtype)
        if isinstance(signed, str):
            return signed
        c, s = signed
        m = None
    if int(c.min()) < lo or int(c.max()) > hi:  # Q4_1 (the signed types are checked above)
        return f"its codes q span {int(c.min())}..{int(c.max())} ({grid.spec.bits}-bit grid) but {qtype} holds {lo}..{hi}"
    half = lambda t: t.numpy().astype(np.float16)  # noqa: E731 - exact: checked above
    return c.numpy(), half(s), (half(m) if m is not None else None)


def _signed_blocks(grid: LayerGrid, s: torch.Tensor, qtype: str) -> tuple[torch.Tensor, torch.Tensor] | str:
    """``(c [out, in], d [out, nb])`` of the ``d * (c - offset)`` types from the block scales ``s``: ``k = q - zero``
    per block as ``d = scale, c = k + offset`` when ``k`` fits, else as ``d = -scale, c = offset - k`` (llama.cpp's
    ``Q4_0`` puts a block's largest positive weight on its -8 level that way); or why neither fits."""
    off = _OFFSET[qtype]
    lo, hi = (r - off for r in _RANGE[qtype])
    k = _blocks(grid.codes - grid.expand(grid.zero).long())
    kmin, kmax = k.amin(-1), k.amax(-1)
    pos = (kmin >= lo) & (kmax <= hi)
    neg = ~pos & (kmax <= -lo) & (kmin >= -hi)
    if not bool((pos | neg).all()):
        bad = ~(pos | neg)
        span = (int(kmin[bad].min()), int(kmax[bad].max()))
        return (f"its q - zero span {span[0]}..{span[1]} in a block ({grid.spec.bits}-bit "
                f"{'symmetric' if grid.spec.symmetric else 'asymmetric'} grid) but {qtype} holds {lo}..{hi} "
                f"(or {-hi}..{-lo} with a negative d)")
    sign = torch.where(neg, -1, 1)
    return (sign.unsqueeze(-1) * k + off).reshape(grid.codes.shape), s * sign


def misfit(grid: LayerGrid, qtype: str) -> str | None:
    """Why ``qtype`` cannot hold ``grid`` exactly (``None`` if it can)."""
    r = block_codes(grid, qtype)
    return r if isinstance(r, str) else None


def _nibbles(c: np.ndarray) -> np.ndarray:
    """``[..., 32]`` codes 0..15 -> ``[..., 16]`` bytes, ``c[j] | c[j + 16] << 4``."""
    c = c.astype(np.uint8)
    return c[..., :16] | (c[..., 16:] << np.uint8(4))


def pack_blocks(grid: LayerGrid, qtype: str) -> np.ndarray:
    """The ``qtype`` blocks of ``grid`` as uint8 ``[out, in / 32 * BLOCK_BYTES]``; ``ValueError`` if they do not fit."""
    r = block_codes(grid, qtype)
    if isinstance(r, str):
        raise PTQUserError(f"{qtype} cannot hold this layer exactly: {r}")
    c, d, m = r
    out = c.shape[0]
    c = c.reshape(out, -1, BLOCK)
    parts = [d[..., None].view(np.uint8)]
    if qtype == "Q4_1":
        parts.append(m[..., None].view(np.uint8))  # type: ignore[index]
    parts.append(c.astype(np.int8).view(np.uint8) if qtype == "Q8_0" else _nibbles(c))
    return np.concatenate(parts, axis=-1).reshape(out, -1)


def block_bytes(n_weights: int, qtype: str) -> int:
    """Theoretical size of ``n_weights`` weights in ``qtype`` (``n / 32`` blocks)."""
    return n_weights // BLOCK * BLOCK_BYTES[qtype]


def spec_misfit(bits: int, symmetric: bool, granularity: str, group_size: int | None, qtype: str,
                qparams: str = "minmax") -> str | None:
    """Why no weight quantized with this spec can fit ``qtype`` (checked before calibrating); ``None``
    when it may (the exact per-layer check, :func:`misfit`, still runs on the result). ``qparams="q4_0"``
    (:mod:`ptq.choosers.q4_0`) makes an asymmetric grid whose blocks span ``q - zero`` in ``-half..half - 1``
    or, written with a negative ``d``, ``-(half - 1)..half``: it fits where a symmetric grid does."""
    if granularity == "group" and (group_size or 0) % BLOCK:
        return f"groups of {group_size} do not cover whole {qtype} blocks of {BLOCK} columns (use a multiple of {BLOCK})"
    narrow = symmetric or qparams == "q4_0"
    q_minus_zero = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if narrow else (-((1 << bits) - 1), (1 << bits) - 1)
    if qtype == "Q4_1" and bits > 4:
        return f"{bits}-bit codes do not fit Q4_1's 4-bit codes"
    if qtype in _OFFSET:
        lo, hi = (r - _OFFSET[qtype] for r in _RANGE[qtype])
        if q_minus_zero[0] < lo or q_minus_zero[1] > hi:
            kind = "symmetric" if symmetric else "q4_0" if narrow else "asymmetric"
            return f"a {bits}-bit {kind} grid spans q - zero {q_minus_zero[0]}..{q_minus_zero[1]}, {qtype} holds {lo}..{hi}"
    return None
