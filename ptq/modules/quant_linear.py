"""``QuantLinear``: a weight-only quantized linear layer holding packed integer codes.

Stored tensors (buffers, so that ``state_dict`` / safetensors see exactly these)::

    qweight  int32 [out, packed_length(in, bits)]   codes packed along the input dimension
                                                     (:func:`ptq.packing.pack_codes` layout)
    scales   float16|float32 [out, n_groups]         channel: [out, 1], tensor: [1, 1]
    qzeros   int32 [n_groups, packed_length(out)]    asymmetric only; zeros packed along
                                                     the output dimension (tensor: [1, 1])
    zero_points float16|float32 [out, n_groups]      instead of qzeros when the zeros are real
                                                     numbers (``spec.zero_dtype``, HQQ)
    g_idx    int32 [in]                              optional: group of each input column
                                                     (GPTQ act-order); absent = consecutive
    bias     [out]                                   optional, in the model's float dtype

Symmetric grids store no zeros: ``zero = (maxq + 1) / 2``. The weight is
``scale * (code - zero)``, computed in float32 exactly as :func:`ptq.quantize.dequantize`
and the algorithms compute their fake-quantized weights, so a ``QuantLinear`` made from a
fake-quantized layer reproduces its weight bit for bit when its scales are stored without
rounding.

Scale storage (measured, see ``tests/ptq/modules/test_quant_linear.py``): the algorithms
produce float32 scales that are almost never float16 numbers; rounding them to float16 moves
every weight by up to 2**-11 relative and the logits by ~1e-4 relative, which breaks
"the checkpoint computes what the fake-quantized model computed". ``scale_dtype="auto"``
(the default) therefore stores float16 when that is lossless and float32 otherwise;
``"float16"`` forces the compact ecosystem layout (the GPTQ export always uses it). The codes are recovered
against the float32 scales the weight was quantized with; they would be the same against the
float16-rounded scales (for 8 bits or fewer ``|code - zero| <= 255`` and a float16 rounding
of the scale moves ``w / scale`` by less than 0.13 of a step).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptq.layers import check_float_class, float_class as float_class_of, float_linear, weight_2d
from ptq.packing import pack_codes, packed_length
from ptq.spec import QuantSpec
from ptq.modules.weight_only_forward import weight_only_forward

SCALE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
#: The QuantSpec fields a module configuration (``quant_config``) spells out.
SPEC_FIELDS = ("bits", "symmetric", "granularity", "group_size", "include_zero", "zero_dtype", "format", "double_quant")


def unpack_rows(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Fast inverse of :func:`ptq.packing.pack_codes` along the last axis: int32 codes ``[rows, n]``.

    Shift-and-mask per code (for 3 bits, 32 codes fill 3 words and a code may straddle two).
    """
    rows, words = packed.shape
    mask = (1 << bits) - 1
    if 32 % bits == 0:
        shifts = torch.arange(0, 32, bits, dtype=torch.int32, device=packed.device)
        codes = (packed.unsqueeze(-1) >> shifts) & mask  # arithmetic shift; the mask drops the sign bits
        return codes.reshape(rows, -1)[:, :n]
    units = -(-words // bits)
    p = packed.to(torch.int64) & 0xFFFFFFFF
    if units * bits != words:
        p = F.pad(p, (0, units * bits - words))
    p = p.reshape(rows, units, bits)
    start = torch.arange(32, device=packed.device) * bits
    lo, off = start // 32, start % 32
    hi = (lo + 1).clamp(max=bits - 1)
    both = p[..., lo] | (p[..., hi] << 32)  # [rows, units, 32]: the two words each code may touch
    return ((both >> off) & mask).to(torch.int32).reshape(rows, -1)[:, :n]


PACK_ELEMENTS = 1 << 22  # weights packed per chunk in from_float (pack_codes holds 64 bytes per 4-bit weight)

def choose_scale_dtype(scale: torch.Tensor, scale_dtype: str | torch.dtype) -> torch.dtype:
    """``"auto"``: float16 if every scale is exactly a float16 number, else float32."""
    if isinstance(scale_dtype, torch.dtype):
        chosen = scale_dtype
    elif scale_dtype == "auto":
        s = scale.float()
        return torch.float16 if bool((s.half().float() == s).all()) else torch.float32
    elif scale_dtype in SCALE_DTYPES:
        chosen = SCALE_DTYPES[scale_dtype]
    else:
        raise ValueError(f"scale_dtype must be 'auto', 'float16' or 'float32', got {scale_dtype!r}")
    if chosen not in SCALE_DTYPES.values():
        raise ValueError(f"scales are stored as float16 or float32, got {chosen}")
    return chosen


def apply_keeping_dtype(module: nn.Module, fn, recurse: bool, names: tuple[str, ...]) -> nn.Module:
    """``nn.Module._apply(fn)`` except that the named buffers keep their dtype (moved, never rounded)."""
    order = list(module._buffers)
    kept = {k: module._buffers.pop(k) for k in names if module._buffers.get(k) is not None}
    try:
        nn.Module._apply(module, fn, recurse)
        for k, t in kept.items():
            moved = fn(t)
            module._buffers[k] = moved if moved.dtype == t.dtype else t.to(moved.device)
    except BaseException:
        for k, t in kept.items():
            module._buffers.setdefault(k, t)
        raise
    finally:
        items = {k: module._buffers[k] for k in order}  # keep the state_dict order
        module._buffers.clear()
        module._buffers.update(items)
    return module


class QuantLinear(nn.Module):
    """Weight-only quantized replacement of ``nn.Linear`` / ``Conv1D`` (packed codes + qparams).

    Build it with :meth:`from_float` (from a layer whose weight is already on its grid) or,
    for loading, :meth:`from_config` (an empty skeleton on the meta device). The forward pass
    (:func:`ptq.modules.weight_only_forward.weight_only_forward`) runs a fused int4/int8 kernel or
    the weight dequantized once and cached in the activation dtype, chosen per call by ``backend``
    (``"auto"``, ``PTQ_QLINEAR_BACKEND``); ``"dequant"`` (or ``tile_rows`` to bound memory) dequantizes
    on every call and caches nothing.
    """

    kind = "weight_only"

    def __init__(
        self, in_features: int, out_features: int, spec: QuantSpec, bias: bool = True,
        act_order: bool = False, scale_dtype: torch.dtype = torch.float16,
        dtype: torch.dtype = torch.float32, float_class: str = "Linear",
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        spec.check_shape(in_features)
        self.in_features, self.out_features, self.spec = in_features, out_features, spec
        self.float_class = check_float_class(float_class)
        self.tile_rows: int | None = None
        self.backend = "auto"  # or "dequant", "cached", "int4pack", "int8pack" (ptq.kernels.weight_only_matmul)
        self.method: str | None = None  # the algorithm that chose the grid (provenance only)
        rows, groups = self.qparam_shape
        kw: dict[str, Any] = {"device": device}
        self.register_buffer("qweight", torch.zeros(out_features, packed_length(in_features, spec.bits), dtype=torch.int32, **kw))
        self.register_buffer("scales", torch.ones(rows, groups, dtype=scale_dtype, **kw))
        zeros_float = spec.float_zero
        zeros_packed = not spec.symmetric and not zeros_float
        self.register_buffer("qzeros", torch.zeros(groups, packed_length(rows, spec.bits), dtype=torch.int32, **kw)
                             if zeros_packed else None)
        self.register_buffer("zero_points", torch.zeros(rows, groups, dtype=SCALE_DTYPES.get(spec.zero_dtype), **kw)
                             if zeros_float else None)
        self.register_buffer("g_idx", torch.zeros(in_features, dtype=torch.int32, **kw) if act_order else None)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, **kw) if bias else None)

    @property
    def qparam_shape(self) -> tuple[int, int]:
        """Shape of ``scales``: ``[1, 1]``, ``[out, 1]`` or ``[out, in / group_size]``."""
        if self.spec.granularity == "tensor":
            return 1, 1
        if self.spec.granularity == "channel":
            return self.out_features, 1
        assert self.spec.group_size is not None
        return self.out_features, self.in_features // self.spec.group_size

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_float(
        cls, module: nn.Module, spec: QuantSpec, scale: torch.Tensor, zero: torch.Tensor,
        g_idx: torch.Tensor | None = None, scale_dtype: str | torch.dtype = "auto", check: bool = True,
    ) -> "QuantLinear":
        """Pack a layer whose weight is already on the grid ``(spec, scale, zero[, g_idx])``.

        ``check`` raises ``ValueError`` if a weight is more than 1% of a step off its grid
        point (the model was changed after quantization, or the qparams do not belong to it).
        """
        W = weight_2d(module).detach()
        out, n = W.shape
        if g_idx is not None and spec.granularity == "group" and torch.equal(
            g_idx.to(torch.int64).cpu(), torch.arange(n) // spec.group_size
        ):
            g_idx = None  # consecutive groups need no map
        if g_idx is not None and spec.granularity != "group":
            g_idx = None  # one group per row: the order of the columns does not matter
        bias = getattr(module, "bias", None)
        sdtype = choose_scale_dtype(scale, scale_dtype)
        q = cls(n, out, spec, bias=bias is not None, act_order=g_idx is not None, scale_dtype=sdtype,
                dtype=W.dtype if W.is_floating_point() else torch.float32, float_class=float_class_of(module),
                device=W.device)
        rows, groups = q.qparam_shape
        scale = scale.detach().float().reshape(rows, groups).to(W.device)
        zero = zero.detach().float().reshape(rows, groups).to(W.device)
        if spec.symmetric:
            zero = torch.full_like(zero, (spec.maxq + 1) / 2)
        elif spec.float_zero:
            stored = zero.to(SCALE_DTYPES[spec.zero_dtype])
            if not bool((stored.float() == zero).all()):
                raise ValueError(f"real-valued zeros must be {spec.zero_dtype} numbers (the chooser rounds them)")
            q.zero_points.copy_(stored)
        elif bool((zero != zero.round()).any()) or bool((zero < 0).any()) or bool((zero > spec.maxq).any()):
            raise ValueError(f"asymmetric zeros must be integers in [0, {spec.maxq}]")
        q.scales.copy_(scale.to(sdtype))
        if g_idx is not None:
            if g_idx.shape != (n,) or int(g_idx.min()) < 0 or int(g_idx.max()) >= groups:
                raise ValueError(f"g_idx must hold {n} group indices in [0, {groups})")
            q.g_idx.copy_(g_idx.to(torch.int32))
        if not spec.symmetric and not spec.float_zero:
            q.qzeros.copy_(pack_codes(zero.t().to(torch.int64), spec.bits))
        worst = 0.0
        step = max(1, PACK_ELEMENTS // max(n, 1))  # rows per chunk: packing's int64 temporaries stay small
        for r0 in range(0, out, step):
            rows = slice(r0, min(r0 + step, out))
            s, z = q._expand(scale, rows=rows), q._expand(zero, rows=rows)  # the grid the weight is on
            Wr = W[rows].float()
            if spec.float_zero:
                codes = torch.clamp(torch.round(Wr / s + z), 0, spec.maxq)
            else:
                codes = torch.clamp(torch.round(Wr / s) + z, 0, spec.maxq)
            if check:
                dev = ((s * (codes - z)).to(W.dtype).float() - Wr).abs() / s
                worst = max(worst, float(dev.max()))
            q.qweight[rows].copy_(pack_codes(codes.to(torch.int64), spec.bits))
        if check and worst > 0.01:
            raise ValueError(
                f"the weight is not on its quantization grid (max deviation {worst:.3g} steps): "
                "were the weights changed after quantization, or do scale/zero belong to another layer?"
            )
        if bias is not None:
            q.bias.copy_(bias.detach())
        return q

    def quant_config(self) -> dict[str, Any]:
        """JSON description of this module (what :meth:`from_config` needs besides the float layer)."""
        return {
            "kind": self.kind, **self.spec.to_dict(), "act_order": self.g_idx is not None,
            "scale_dtype": str(self.scales.dtype).removeprefix("torch."),
        }

    @classmethod
    def from_config(cls, module: nn.Module, config: dict[str, Any], dtype: torch.dtype = torch.float32) -> "QuantLinear":
        """An empty skeleton (meta device) replacing the float ``module`` (itself possibly on meta)."""
        spec = QuantSpec(**{k: config[k] for k in SPEC_FIELDS if k in config})
        out, n = weight_2d(module).shape
        return cls(n, out, spec, bias=getattr(module, "bias", None) is not None,
                   act_order=bool(config.get("act_order", False)),
                   scale_dtype=choose_scale_dtype(torch.ones(1), config.get("scale_dtype", "float16")),
                   dtype=dtype, float_class=float_class_of(module), device="meta")

    # ------------------------------------------------------------------ weights
    def _expand(self, p: torch.Tensor, rows: slice | None) -> torch.Tensor:
        """Broadcast a per-(row, group) tensor to ``[rows, in]`` (or ``[1, 1]`` per tensor)."""
        if self.spec.granularity == "tensor":
            return p.reshape(1, 1)
        p = p if rows is None else p[rows]
        if self.spec.granularity == "channel":
            return p
        if self.g_idx is not None:
            return p[:, self.g_idx.long()]
        return p.repeat_interleave(self.spec.group_size, dim=1)

    def zeros(self) -> torch.Tensor:
        """Zero points as float32 ``[rows, n_groups]`` (the spec's shape)."""
        rows, groups = self.qparam_shape
        if self.zero_points is not None:
            return self.zero_points.float()
        if self.qzeros is None:
            return torch.full((rows, groups), (self.spec.maxq + 1) / 2, device=self.scales.device)
        return unpack_rows(self.qzeros, self.spec.bits, rows).t().float()

    def codes(self, rows: slice | None = None) -> torch.Tensor:
        """Integer codes ``[out, in]`` (int32), or of the given output rows."""
        packed = self.qweight if rows is None else self.qweight[rows]
        return unpack_rows(packed, self.spec.bits, self.in_features)

    def dequantize_weight(self, rows: slice | None = None) -> torch.Tensor:
        """``scale * (code - zero)`` as float32 ``[out, in]`` (or the given output rows)."""
        s = self._expand(self.scales.float(), rows)
        z = self._expand(self.zeros(), rows)
        return s * (self.codes(rows).float() - z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x W^T + b`` through ``self.backend`` (``"auto"``; see :mod:`ptq.modules.weight_only_forward`)."""
        return weight_only_forward(self, x)

    def to_float(self, dtype: torch.dtype | None = None) -> nn.Module:
        """An ``nn.Linear`` (or ``Conv1D``) holding the dequantized weight."""
        return float_linear(self.dequantize_weight(), self.bias, self.float_class, dtype)

    def footprint_bytes(self) -> int:
        """Bytes of the stored tensors (codes, scales, zeros, g_idx, bias)."""
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """``model.to(dtype)`` / ``.half()`` move the scales (and real-valued zeros) but never round them."""
        return apply_keeping_dtype(self, fn, recurse, ("scales", "zero_points"))

    def extra_repr(self) -> str:
        extra = f", g_idx" if self.g_idx is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, {self.spec.describe()}, "
                f"bias={self.bias is not None}, scales={str(self.scales.dtype).removeprefix('torch.')}{extra}")
