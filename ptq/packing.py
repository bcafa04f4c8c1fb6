"""Bit packing of unsigned codes into int32 words.

Layout: the codes of the last axis form one little-endian bit stream; code ``i`` occupies
bits ``[i*bits, (i+1)*bits)`` of the stream, and stream bit ``k`` is bit ``k % 32`` of
word ``k // 32``. For 2, 4 and 8 bits this puts ``32 / bits`` whole codes in each word,
code ``i`` at bit offset ``bits * (i % (32/bits))``; for 3 bits 32 codes fill 3 words and
codes 10 and 21 straddle word boundaries. This is exactly the packing of the GPTQ
reference (``QuantLinear.pack``) and of the GPTQ checkpoint format along its packed axis.
A length that is not a multiple of the unit is padded with zero codes.
"""
from __future__ import annotations

import torch

SUPPORTED_BITS = (2, 3, 4, 8)


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"packing supports {SUPPORTED_BITS} bits, got {bits}")


def packed_length(n: int, bits: int) -> int:
    """Number of int32 words that hold ``n`` codes of ``bits`` bits."""
    _check_bits(bits)
    return -(-n * bits // 32)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned codes ``[..., n]`` (values in ``[0, 2**bits)``) into int32 ``[..., words]``."""
    _check_bits(bits)
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
    c = codes.to(torch.int64)
    if c.numel() and (c.min() < 0 or c.max() >= (1 << bits)):
        raise ValueError(f"codes must lie in [0, {(1 << bits) - 1}] for {bits}-bit packing")
    *lead, n = c.shape
    words = packed_length(n, bits)
    pad = words * 32 // bits - n  # whole codes of padding; 32*words is a multiple of bits
    if words * 32 % bits == 0 and pad:
        c = torch.nn.functional.pad(c, (0, pad))
    shifts = torch.arange(bits, dtype=torch.int64, device=c.device)
    stream = ((c.unsqueeze(-1) >> shifts) & 1).reshape(*lead, c.shape[-1] * bits)  # [..., n*bits]
    total = words * 32
    if stream.shape[-1] < total:
        stream = torch.nn.functional.pad(stream, (0, total - stream.shape[-1]))
    stream = stream.reshape(*lead, words, 32)
    weights = torch.ones(32, dtype=torch.int64, device=c.device) << torch.arange(32, device=c.device)
    packed = (stream * weights).sum(-1)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)
    return packed.to(torch.int32)


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int32 ``[..., words]`` back to uint8 codes ``[..., n]``."""
    _check_bits(bits)
    if packed.dtype != torch.int32:
        raise ValueError(f"packed words must be int32, got {packed.dtype}")
    *lead, words = packed.shape
    if words != packed_length(n, bits):
        raise ValueError(f"{words} words cannot hold exactly {n} codes of {bits} bits")
    p = packed.to(torch.int64) & 0xFFFFFFFF
    stream = (p.unsqueeze(-1) >> torch.arange(32, device=p.device)) & 1  # [..., words, 32]
    stream = stream.reshape(*lead, words * 32)[..., : n * bits].reshape(*lead, n, bits)
    codes = (stream << torch.arange(bits, device=p.device)).sum(-1)
    return codes.to(torch.uint8)
