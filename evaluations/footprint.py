"""Weight footprint of a model: bytes as stored, bits per weight, against fp32 and fp16.

Each parameter / buffer storage is counted once (tied embeddings count once). Layers in
``quantized`` (a fake-quantized model: float weights on a grid) are counted as they would be
stored packed, the layout of :class:`ptq.modules.QuantLinear`:

    codes: out x ceil(in * bits / 32) int32 words;  scales: one float16 per (row, group);
    zeros: ``bits`` bits per (row, group), packed (asymmetric only), or a float16 / float32 per
    (row, group) for real-valued zeros (HQQ);  bias as stored.
    nf4 / fp4 (:class:`ptq.modules.Linear4bit`): 4 bits per weight, a float32 absmax per block, or
    with double quantization one byte per block plus a float32 per 256 blocks and one offset.

Packed quantized modules (anything with ``footprint_bytes()``) report their own bytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from torch import nn

from ptq.layers import in_out_features
from ptq.packing import packed_length
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError


@dataclass
class Footprint:
    """``total_bytes`` of all weights; ``params`` their count (quantized layers included)."""

    total_bytes: int
    params: int
    quantized_params: int
    quantized_bytes: int

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.total_bytes / max(self.params, 1)

    @property
    def quantized_bits_per_weight(self) -> float:
        return 8 * self.quantized_bytes / max(self.quantized_params, 1)

    @property
    def fp32_bytes(self) -> int:
        return 4 * self.params

    @property
    def fp16_bytes(self) -> int:
        return 2 * self.params

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(bits_per_weight=self.bits_per_weight, quantized_bits_per_weight=self.quantized_bits_per_weight,
                 ratio_vs_fp32=self.total_bytes / max(self.fp32_bytes, 1),
                 ratio_vs_fp16=self.total_bytes / max(self.fp16_bytes, 1))
        return d

    def human(self) -> str:
        return f"{self.total_bytes / 2**20:.1f} MiB"


def packed_weight_bytes(out_features: int, in_features: int, spec: QuantSpec) -> int:
    """Bytes of a ``[out, in]`` weight stored packed with float16 scales (module docstring)."""
    if spec.granularity == "tensor":
        rows, groups = 1, 1
    elif spec.granularity == "channel":
        rows, groups = out_features, 1
    else:
        spec.check_shape(in_features)
        rows, groups = out_features, in_features // spec.group_size
    if spec.codebook:
        from ptq.modules.linear4bit import codebook_weight_bytes

        return codebook_weight_bytes(out_features, in_features, spec)
    codes = out_features * packed_length(in_features, spec.bits) * 4
    scales = rows * groups * 2
    if spec.float_zero:
        zeros = rows * groups * (2 if spec.zero_dtype == "float16" else 4)
    else:
        zeros = 0 if spec.symmetric else groups * packed_length(rows, spec.bits) * 4
    return codes + scales + zeros


def footprint(model: nn.Module, quantized: Mapping[str, QuantSpec] | None = None) -> Footprint:
    """Footprint of ``model``; ``quantized`` maps qualified linear-layer names to their spec."""
    quantized = dict(quantized or {})
    seen: set[tuple[int, int]] = set()
    total = params = q_params = q_bytes = 0

    def storage_key(t) -> tuple[int, int]:
        return (t.untyped_storage().data_ptr(), t.storage_offset()) if t.device.type != "meta" else (id(t), 0)

    for name, module in model.named_modules():
        if hasattr(module, "footprint_bytes") and module is not model:
            n = int(module.in_features) * int(module.out_features)
            b = int(module.footprint_bytes())
            total, params, q_params, q_bytes = total + b, params + n, q_params + n, q_bytes + b
            quantized.pop(name, None)  # already packed: its stored bytes are what counts
            for t in module.buffers():
                seen.add(storage_key(t))
            continue
        if name in quantized:
            in_f, out_f = in_out_features(module)
            b = packed_weight_bytes(out_f, in_f, quantized.pop(name))
            seen.add(storage_key(module.weight))
            total, params, q_params, q_bytes = total + b, params + out_f * in_f, q_params + out_f * in_f, q_bytes + b
    if quantized:
        raise PTQUserError(f"footprint: no layer named {sorted(quantized)[0]!r} in the model")
    for t in list(model.parameters()) + [b for b in model.buffers() if b is not None]:
        key = storage_key(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
        if t.is_floating_point() and t.dim() >= 1 and isinstance(t, nn.Parameter):
            params += t.numel()
    return Footprint(total_bytes=total, params=params, quantized_params=q_params, quantized_bytes=q_bytes)
