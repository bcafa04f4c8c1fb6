"""``Linear4bit``: a weight-only linear layer in a 4-bit code book (NF4 / FP4, :mod:`ptq.codebook`).

Stored tensors (buffers)::

    qweight        uint8   [out, in / 2]            two codes per byte, element 2k in the high nibble
                                                    (bitsandbytes' packing, row by row)
    absmax         float32 [out, in / group_size]   one per block (without double quantization)
    absmax_codes   uint8   [out, in / group_size]   with double quantization: 8-bit dynamic codes,
    absmax2        float32 [ceil(blocks / 256)]     their blockwise absmax,
    absmax_offset  float32 [1]                      and the mean subtracted before
    bias           [out]                            optional, in the model's float dtype

The weight is ``CODE[q] * absmax`` (absmax double-dequantized first when stored so), computed in
float32 as :func:`ptq.codebook.codebook_dequantize`, so the module reproduces the fake-quantized
weight bit for bit. Bits per weight at block 64: 4 + 32/64 = 4.5, with double quantization
4 + 8/64 + 32/(64*256) = 4.127 (plus one float32 offset per layer).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptq.codebook import (
    DQ_BLOCK, code_values, codebook_dequantize, double_dequantize, double_quantize, nearest_codes, pack_nibbles,
    unpack_nibbles,
)
from ptq.layers import float_class as float_class_of, float_linear, weight_2d
from ptq.modules.quant_linear import SPEC_FIELDS, apply_keeping_dtype
from ptq.spec import QuantSpec

_FLOAT32_BUFFERS = ("absmax", "absmax2", "absmax_offset")


def codebook_weight_bytes(out_features: int, in_features: int, spec: QuantSpec) -> int:
    """Bytes :class:`Linear4bit` stores for a ``[out, in]`` weight (bias excluded)."""
    spec.check_shape(in_features)
    assert spec.group_size is not None
    blocks = out_features * (in_features // spec.group_size)
    codes = out_features * in_features // 2
    if spec.double_quant:
        return codes + blocks + 4 * -(-blocks // DQ_BLOCK) + 4
    return codes + 4 * blocks


class Linear4bit(nn.Module):
    """NF4 / FP4 replacement of ``nn.Linear`` / ``Conv1D`` (build with :meth:`from_float`)."""

    kind = "linear4bit"

    def __init__(self, in_features: int, out_features: int, spec: QuantSpec, bias: bool = True,
                 dtype: torch.dtype = torch.float32, float_class: str = "Linear",
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if not spec.codebook:
            raise ValueError(f"Linear4bit holds format nf4 or fp4, got {spec.format!r}")
        spec.check_shape(in_features)
        if in_features % 2:
            raise ValueError(f"two 4-bit codes per byte need an even in_features, got {in_features}")
        assert spec.group_size is not None
        self.in_features, self.out_features, self.spec, self.float_class = in_features, out_features, spec, float_class
        self.method: str | None = None
        self.tile_rows: int | None = None
        groups = in_features // spec.group_size
        kw: dict[str, Any] = {"device": device}
        self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8, **kw))
        dq = spec.double_quant
        self.register_buffer("absmax", None if dq else torch.ones(out_features, groups, **kw))
        self.register_buffer("absmax_codes", torch.zeros(out_features, groups, dtype=torch.uint8, **kw) if dq else None)
        nblocks = -(-out_features * groups // DQ_BLOCK)
        self.register_buffer("absmax2", torch.ones(nblocks, **kw) if dq else None)
        self.register_buffer("absmax_offset", torch.zeros(1, **kw) if dq else None)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, **kw) if bias else None)

    @classmethod
    def from_float(cls, module: nn.Module, spec: QuantSpec, scale: torch.Tensor, zero: torch.Tensor | None = None,
                   g_idx: torch.Tensor | None = None, check: bool = True, **_: Any) -> "Linear4bit":
        """Pack a layer whose weight is ``CODE[q] * absmax_used`` (the output of ``rtn`` with this spec).

        ``scale`` is the exact absmax per block (before double quantization, which is redone here
        deterministically); ``zero`` and ``g_idx`` are not used by code books. ``check`` raises
        ``ValueError`` if the weight is not on that grid.
        """
        W = weight_2d(module).detach()
        out, n = W.shape
        float_class = float_class_of(module)
        bias = getattr(module, "bias", None)
        q = cls(n, out, spec, bias=bias is not None, dtype=W.dtype if W.is_floating_point() else torch.float32,
                float_class=float_class, device=W.device)
        absmax = scale.detach().float().reshape(out, -1).to(W.device)
        if spec.double_quant:
            q2, absmax2, offset = double_quantize(absmax)
            q.absmax_codes.copy_(q2)
            q.absmax2.copy_(absmax2)
            q.absmax_offset.copy_(offset)
        else:
            q.absmax.copy_(absmax)
        used = q.used_absmax()
        assert spec.group_size is not None
        per_col = used.repeat_interleave(spec.group_size, dim=1)
        ratio = torch.where(per_col != 0, W.float() / per_col, torch.zeros_like(per_col))
        codes = nearest_codes(ratio.clamp(-1, 1), code_values(spec.format).to(W.device)).to(torch.uint8)
        if check:
            dev = (codebook_dequantize(codes, used, spec).to(W.dtype).float() - W.float()).abs()
            if bool((dev > 1e-6 * per_col.abs().clamp(min=1e-30)).any()):
                raise ValueError("the weight is not on its NF4/FP4 grid: were the weights changed after quantization, "
                                 "or does the absmax belong to another layer?")
        q.qweight.copy_(pack_nibbles(codes))
        if bias is not None:
            q.bias.copy_(bias.detach())
        return q

    def quant_config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.spec.to_dict()}

    @classmethod
    def from_config(cls, module: nn.Module, config: dict[str, Any], dtype: torch.dtype = torch.float32) -> "Linear4bit":
        spec = QuantSpec(**{k: config[k] for k in SPEC_FIELDS if k in config})
        out, n = weight_2d(module).shape
        float_class = float_class_of(module)
        return cls(n, out, spec, bias=getattr(module, "bias", None) is not None, dtype=dtype,
                   float_class=float_class, device="meta")

    def used_absmax(self) -> torch.Tensor:
        """The absmax per block the weight is dequantized with (float32 ``[out, groups]``)."""
        if self.spec.double_quant:
            return double_dequantize(self.absmax_codes, self.absmax2, self.absmax_offset)
        return self.absmax.float()

    def codes(self) -> torch.Tensor:
        return unpack_nibbles(self.qweight)

    def dequantize_weight(self) -> torch.Tensor:
        """``CODE[q] * absmax`` as float32 ``[out, in]``."""
        return codebook_dequantize(self.codes(), self.used_absmax(), self.spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantize_weight().to(x.dtype), bias)

    def to_float(self, dtype: torch.dtype | None = None) -> nn.Module:
        return float_linear(self.dequantize_weight(), self.bias, self.float_class, dtype)

    def footprint_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """``model.to(dtype)`` moves the float32 absmax tensors but never rounds them."""
        return apply_keeping_dtype(self, fn, recurse, _FLOAT32_BUFFERS)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self.spec.describe()}, "
                f"bias={self.bias is not None}")
