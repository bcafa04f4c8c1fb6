"""Footprint: bytes as stored, packed estimates for fake-quantized layers, tied weights once."""
from __future__ import annotations

import pytest
import torch

from evaluations import footprint, packed_weight_bytes
from ptq import QuantSpec, packed_length


def test_float_model_counts_tied_embeddings_once(tiny_model):
    model = tiny_model("llama")  # tied lm_head
    n = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    fp = footprint(model)
    assert fp.params == n and fp.quantized_params == 0
    assert fp.total_bytes >= 4 * n and fp.bits_per_weight == pytest.approx(32, rel=0.01)
    half = footprint(model.to(torch.bfloat16))
    assert half.bits_per_weight == pytest.approx(16, rel=0.01)
    assert half.to_dict()["ratio_vs_fp32"] == pytest.approx(0.5, rel=0.01)


@pytest.mark.parametrize("spec", [QuantSpec(bits=4), QuantSpec(bits=3, granularity="group", group_size=32),
                                  QuantSpec(bits=8, symmetric=True), QuantSpec(bits=2, granularity="tensor")])
def test_packed_bytes_formula(spec):
    out_f, in_f = 96, 64
    got = packed_weight_bytes(out_f, in_f, spec)
    units = {"tensor": 1, "channel": out_f, "group": out_f * in_f // 32}[spec.granularity]
    rows = 1 if spec.granularity == "tensor" else out_f
    zeros = 0 if spec.symmetric else (units // rows) * packed_length(rows, spec.bits) * 4
    assert got == out_f * packed_length(in_f, spec.bits) * 4 + 2 * units + zeros
    assert got * 8 / (out_f * in_f) < spec.bits + 1  # within a bit of overhead at these shapes


def test_quantized_layers_counted_packed(tiny_model):
    model = tiny_model("opt")
    spec = QuantSpec(bits=4, granularity="group", group_size=32)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    fp = footprint(model, {n: spec for n in names})
    assert fp.quantized_params == sum(dict(model.named_modules())[n].weight.numel() for n in names)
    assert 4 < fp.quantized_bits_per_weight < 5
    assert fp.total_bytes < footprint(model).total_bytes
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        footprint(model, {"nope": spec})


def test_gpt2_conv1d_shapes(tiny_model):
    model = tiny_model("gpt2")
    spec = QuantSpec(bits=8)
    fp = footprint(model, {"transformer.h.0.mlp.c_fc": spec})
    w = dict(model.named_modules())["transformer.h.0.mlp.c_fc"].weight  # [in 64, out 128]
    assert fp.quantized_bytes == packed_weight_bytes(w.shape[1], w.shape[0], spec)


def test_swapped_modules_count_their_stored_bytes_even_when_named(tiny_model):
    from ptq.modules.llm_int8_linear import Int8OutlierLinear
    from ptq.modules.swap import set_submodule

    model = tiny_model("llama")
    name = "model.layers.0.mlp.down_proj"
    q = Int8OutlierLinear.from_float(model.get_submodule(name))
    set_submodule(model, name, q)
    fp = footprint(model, {name: QuantSpec(bits=8, symmetric=True)})
    assert fp.quantized_bytes == q.footprint_bytes()
