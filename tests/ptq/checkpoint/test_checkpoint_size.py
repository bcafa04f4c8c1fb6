"""Bytes on disk of the quantized layers: bits x parameters plus the scale / zero overhead."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from ckpt_helpers import block_linears, make_model, quantize_tiny

from ptq import QuantSpec
from ptq.checkpoint import export_gptq, save_quantized


def tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of every tensor, read from the safetensors header (independent of safetensors)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}


def theoretical_bytes(out: int, n: int, spec: QuantSpec, scale_bytes: int) -> float:
    groups = {"tensor": 1, "channel": out, "group": out * n // (spec.group_size or 1)}[spec.granularity]
    zero_bits = 0 if spec.symmetric else groups * spec.bits
    return (out * n * spec.bits + zero_bits) / 8 + groups * scale_bytes


@pytest.mark.parametrize("spec", [
    QuantSpec(4, granularity="group", group_size=32),
    QuantSpec(3, granularity="group", group_size=32),
    QuantSpec(2),
    QuantSpec(8, symmetric=True),
], ids=lambda s: s.describe())
@pytest.mark.parametrize("fmt", ["ptq", "gptq"])
def test_quantized_bytes_within_3_percent(tmp_path, spec, fmt):
    model = make_model("llama")
    records = quantize_tiny(model, spec)
    if fmt == "ptq":
        save_quantized(model, tmp_path / "ck", records, scale_dtype="float16")
    else:
        export_gptq(model, tmp_path / "ck", records)
    sizes = tensor_bytes(tmp_path / "ck" / "model.safetensors")
    measured = theory = 0.0
    for name, m in block_linears(model).items():
        measured += sum(b for k, b in sizes.items() if k.startswith(name + "."))
        theory += theoretical_bytes(*m.weight.shape, spec, scale_bytes=2)
        if fmt == "gptq":
            theory += 4 * m.weight.shape[1]  # the format always stores g_idx
    assert abs(measured / theory - 1) < 0.03, (measured, theory)
    total = (tmp_path / "ck" / "model.safetensors").stat().st_size
    assert total - sum(sizes.values()) < 16_384  # the header is all the rest
