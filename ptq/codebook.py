"""4-bit code books NF4 and FP4 with one absmax per block, and double quantization (QLoRA).

Dettmers, Pagnoni, Holtzman, Zettlemoyer, "QLoRA: Efficient Finetuning of Quantized LLMs" (2023),
Sec. 3, as bitsandbytes implements it (``functional.quantize_4bit`` / ``dequantize_4bit`` and its
reference backend ``backends/default/ops.py``, version 0.50):

* the weight, flattened row by row, is cut into blocks of ``blocksize`` (64) values; for a
  ``[out, in]`` weight with ``blocksize | in`` a block is ``blocksize`` consecutive columns of one
  row (ptq's ``granularity="group"``);
* per block ``absmax = max |x|``, ``scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1)`` and the
  code is the nearest code-book value: ``bucketize`` over the midpoints of the sorted values (a
  value exactly on a midpoint takes the lower one), mapped back to the code's index;
* ``x_hat = CODE[q] * absmax``; codes are packed two per byte, the first in the high nibble.

Double quantization (Sec. 3, "Double Quantization"; ``compress_statistics=True``): the absmax
constants ``c`` (float32, in block order) are centred, ``offset = mean(c)``, and ``c - offset``
is quantized blockwise like the weight, in blocks of 256 with its own float32 absmax, to the
8-bit signed dynamic map (Dettmers 2015, bitsandbytes' ``create_dynamic_map``); the weight is
then dequantized with ``c_hat = DYNAMIC[q2] * absmax2 + offset``. Codes are always chosen with
the exact ``c`` (the double quantization only changes the dequantized scale).
"""
from __future__ import annotations

import torch

from ptq.errors import PTQUserError
from ptq.spec import QuantSpec

#: NF4: quantiles of N(0, 1) normalised to [-1, 1], 8 positive and 7 negative values plus 0
#: (QLoRA Sec. 3 "4-bit NormalFloat"; bitsandbytes' ``get_4bit_type("nf4")``), index = code.
NF4_VALUES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
#: FP4 (e2m1 with exponent bias 2, no inf / NaN) in bitsandbytes' bit layout: bit 3 is the sign,
#: codes 0b000..0b111 are 0, 0.0625 (subnormal), 8, 12, 4, 6, 2, 3; divided by 12 (the largest).
FP4_VALUES = tuple(v / 12.0 for v in (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0,
                                      -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0))
DQ_BLOCK = 256  # blocks of absmax constants in double quantization (bitsandbytes)


def code_values(fmt: str) -> torch.Tensor:
    """The 16 values of ``"nf4"`` or ``"fp4"`` as float32, index = code."""
    if fmt not in ("nf4", "fp4"):
        raise PTQUserError(f"no 4-bit code book named {fmt!r}; known: nf4, fp4")
    return torch.tensor(NF4_VALUES if fmt == "nf4" else FP4_VALUES, dtype=torch.float32)


def dynamic_map() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic map (256 sorted float32 values in [-1, 1]).

    Dynamic tree quantization (Dettmers, "8-Bit Approximations for Parallelism in Deep
    Learning", 2015) with 7 exponent bits: for exponent ``i = 0..6`` the ``2**i`` midpoints of
    ``linspace(0.1, 1, 2**i + 1)`` times ``10**(i - 6)`` (all in float32), with both signs; then 0 and 1,
    padded with zeros to 256 and sorted.
    """
    data: list[float] = []
    for i in range(7):
        bounds = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0  # float32, and so are the products below
        data += (10 ** (i - 6) * means).tolist() + (-(10 ** (i - 6)) * means).tolist()
    data += [0.0, 1.0]
    data += [0.0] * (256 - len(data))
    return torch.tensor(sorted(data), dtype=torch.float32)


def nearest_codes(scaled: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Index of the nearest value for each element of ``scaled`` (in [-1, 1]), int64.

    ``bucketize`` over the midpoints of the sorted values (a tie takes the lower value), then
    back to the values' own indices, as bitsandbytes' reference backend.
    """
    order = torch.argsort(values)
    sorted_values = values[order]
    midpoints = (sorted_values[:-1] + sorted_values[1:]) / 2
    return order[torch.bucketize(scaled, midpoints)]


def _blockwise(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(absmax per block, x / absmax clamped to [-1, 1])`` of a flat tensor; the last block may be short."""
    n = x.numel()
    full = n - n % block
    parts_abs, parts_scaled = [], []
    if full:
        xb = x[:full].reshape(-1, block)
        a = xb.abs().amax(dim=1)
        parts_abs.append(a)
        parts_scaled.append(torch.clamp(xb * (1.0 / a.clamp(min=1e-38)).unsqueeze(1), -1, 1).reshape(-1))
    if n % block:
        a = x[full:].abs().amax().clamp(min=1e-38)
        parts_abs.append(a.reshape(1))
        parts_scaled.append(torch.clamp(x[full:] / a, -1, 1))
    return torch.cat(parts_abs), torch.cat(parts_scaled)


def absmax_quantize(W: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (uint8 ``[out, in]``) and absmax (float32 ``[out, in / group_size]``) of a 2-D weight."""
    if not spec.codebook:
        raise PTQUserError(f"absmax_quantize needs format nf4 or fp4, got {spec.format!r}")
    if W.dim() != 2:
        raise PTQUserError(f"expected a 2-D [out_features, in_features] tensor, got shape {tuple(W.shape)}")
    spec.check_shape(W.shape[1])
    assert spec.group_size is not None
    Wf = W.float()
    if not torch.isfinite(Wf).all():
        raise PTQUserError("the tensor to quantize contains NaN or inf; quantization needs finite values")
    absmax, scaled = _blockwise(Wf.reshape(-1), spec.group_size)
    codes = nearest_codes(scaled, code_values(spec.format)).to(torch.uint8).reshape(W.shape)
    return codes, absmax.reshape(W.shape[0], -1)


def double_quantize(absmax: torch.Tensor, block: int = DQ_BLOCK) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q2 uint8, absmax2 float32 [ceil(n / block)], offset float32 [1])`` of the absmax constants."""
    c = absmax.float().reshape(-1)
    offset = c.mean().reshape(1)
    absmax2, scaled = _blockwise(c - offset, block)
    q2 = nearest_codes(scaled, dynamic_map()).to(torch.uint8)
    return q2.reshape(absmax.shape), absmax2, offset


def double_dequantize(q2: torch.Tensor, absmax2: torch.Tensor, offset: torch.Tensor, block: int = DQ_BLOCK) -> torch.Tensor:
    """``DYNAMIC[q2] * absmax2[block of q2] + offset``, float32, the shape of ``q2``."""
    flat = dynamic_map().to(q2.device)[q2.reshape(-1).long()]
    which = torch.arange(flat.numel(), device=q2.device) // block
    return (flat * absmax2.float()[which] + offset.float()).reshape(q2.shape)


def used_absmax(absmax: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """The absmax the weight is dequantized with: double-quantized when ``spec.double_quant``."""
    return double_dequantize(*double_quantize(absmax)) if spec.double_quant else absmax.float()


def codebook_dequantize(codes: torch.Tensor, absmax: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``CODE[q] * absmax`` (float32 ``[out, in]``) with ``absmax`` already as used (:func:`used_absmax`)."""
    assert spec.group_size is not None
    values = code_values(spec.format).to(codes.device)[codes.long()]
    return (values.reshape(codes.shape[0], -1, spec.group_size) * absmax.float().unsqueeze(-1)).reshape(codes.shape)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., n]`` codes in [0, 15] -> uint8 ``[..., n / 2]``, element ``2k`` in the high nibble."""
    if codes.shape[-1] % 2:
        raise PTQUserError(f"two 4-bit codes per byte need an even length, got {codes.shape[-1]}")
    c = codes.to(torch.uint8)
    return (c[..., ::2] << 4) | c[..., 1::2]


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`."""
    return torch.stack((packed >> 4, packed & 0xF), dim=-1).reshape(*packed.shape[:-1], -1)
