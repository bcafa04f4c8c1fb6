"""GPTQ checkpoint layout, checked against an independent numpy reading of the documented format.

Documented layout (AutoGPTQ ``QuantLinear.pack`` / GPTQModel / transformers + optimum):
``qweight`` int32 ``[in*bits/32, out]``: row ``i*bits // 32`` of column ``o`` holds bits
``i*bits % 32 ...`` of code ``i`` (codes straddle two words for 3 bits); ``qzeros`` int32
``[G, out*bits/32]`` packed the same way along the output axis, storing ``zero - 1`` in the
v1 "gptq" format; ``scales`` float16 ``[G, out]``; ``g_idx`` int32 ``[in]``;
``w[o, j] = scales[g_idx[j], o] * (q[j, o] - zero[g_idx[j], o])``.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from ckpt_helpers import logits, make_model, quantize_tiny
from safetensors.numpy import load_file as np_load_file

from ptq import QuantSpec, quantize
from ptq.checkpoint import export_gptq, load_quantized
from ptq.modules import QuantLinear, quantize_modules


def np_unpack_rows(words: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Codes ``[n, cols]`` from int32 words ``[n*bits/32, cols]`` (little-endian along axis 0)."""
    u = words.astype(np.uint32).astype(np.uint64)
    codes = np.zeros((n, words.shape[1]), dtype=np.int64)
    for i in range(n):
        w, off = divmod(i * bits, 32)
        v = u[w] >> np.uint64(off)
        if off + bits > 32:
            v = v | (u[w + 1] << np.uint64(32 - off))
        codes[i] = (v & np.uint64((1 << bits) - 1)).astype(np.int64)
    return codes


def np_dequantize(t: dict[str, np.ndarray], name: str, bits: int, v1: bool) -> tuple[np.ndarray, np.ndarray]:
    """(codes [in, out], float32 weight [out, in]) of one layer."""
    qweight, qzeros, scales, g_idx = (t[f"{name}.{k}"] for k in ("qweight", "qzeros", "scales", "g_idx"))
    n, out = qweight.shape[0] * 32 // bits, qweight.shape[1]
    q = np_unpack_rows(qweight, bits, n)
    z = np_unpack_rows(qzeros.T, bits, out).T + (1 if v1 else 0)  # [G, out]
    s = scales.astype(np.float32)
    w = s[g_idx] * (q.astype(np.float32) - z[g_idx].astype(np.float32))  # [in, out]
    return q, w.T


def reference_codes(W: torch.Tensor, rec, spec: QuantSpec) -> np.ndarray:
    """Codes of an on-grid weight from its record (act-order groups through g_idx)."""
    if rec.g_idx is None or spec.granularity != "group":
        return quantize(W, rec.scale, rec.zero, spec).numpy()
    g = rec.g_idx.long()
    s, z = rec.scale[:, g], rec.zero[:, g]
    return torch.clamp(torch.round(W / s) + z, 0, spec.maxq).to(torch.uint8).numpy()


CASES = [
    (QuantSpec(4, granularity="group", group_size=32), False),
    (QuantSpec(3, granularity="group", group_size=32), True),
    (QuantSpec(2), False),
    (QuantSpec(8, symmetric=True, granularity="group", group_size=16), False),
    (QuantSpec(4, symmetric=True), True),
]


@pytest.mark.parametrize("spec,act_order", CASES, ids=lambda c: getattr(c, "describe", lambda: f"act{c}")())
def test_export_layout_and_import(tmp_path, tokenizer, spec, act_order):
    model = make_model("llama")
    records = quantize_tiny(model, spec, method="gptq", act_order=act_order)
    out = export_gptq(model, tmp_path / "g", records, tokenizer=tokenizer)

    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "gptq" and qc["checkpoint_format"] == "gptq" and qc["bits"] == spec.bits
    assert qc["group_size"] == (spec.group_size if spec.granularity == "group" else -1)
    assert qc["sym"] is spec.symmetric and qc["desc_act"] is (act_order and spec.granularity == "group")
    assert json.loads((out / "quantize_config.json").read_text())["bits"] == spec.bits

    t = np_load_file(str(out / "model.safetensors"))
    half = copy.deepcopy(model)
    quantize_modules(half, records, scale_dtype="float16")  # what the format can hold
    for name, rec in records.items():
        assert t[f"{name}.qweight"].dtype == np.int32 and t[f"{name}.scales"].dtype == np.float16
        assert t[f"{name}.g_idx"].dtype == np.int32
        codes, w = np_dequantize(t, name, spec.bits, v1=True)
        fake = model.get_submodule(name).weight.data
        assert np.array_equal(codes.T, reference_codes(fake, rec, spec))
        assert np.array_equal(w, half.get_submodule(name).dequantize_weight().numpy())
        np.testing.assert_allclose(w, fake.numpy(), rtol=0, atol=float(rec.scale.max()) * 2**-9 * (1 << spec.bits))

    loaded, tok = load_quantized(out)
    assert tok is not None
    assert isinstance(loaded.model.layers[0].self_attn.q_proj, QuantLinear)
    assert torch.equal(logits(loaded), logits(half))
    torch.testing.assert_close(logits(loaded), logits(model), rtol=0, atol=5e-3)


def test_gpt2_conv1d_export_import(tmp_path):
    model = make_model("gpt2")
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=32))
    export_gptq(model, tmp_path / "g", records)
    t = np_load_file(str(tmp_path / "g" / "model.safetensors"))
    name = "transformer.h.0.attn.c_attn"
    assert t[f"{name}.qweight"].shape == (64 * 4 // 32, 192)
    _, w = np_dequantize(t, name, 4, v1=True)
    np.testing.assert_allclose(w, model.get_submodule(name).weight.data.t().numpy(), atol=1e-3)
    half = copy.deepcopy(model)
    quantize_modules(half, records, scale_dtype="float16")
    loaded, _ = load_quantized(tmp_path / "g")
    torch.testing.assert_close(logits(loaded), logits(half), rtol=1e-5, atol=1e-5)


def test_zero_point_zero_goes_to_v2(tmp_path):
    model = make_model("llama")
    up = model.model.layers[0].mlp.up_proj
    up.weight.data.abs_()  # all weights >= 0: min-max zero point 0
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=32))
    assert (records["model.layers.0.mlp.up_proj"].zero == 0).any()
    with pytest.raises(ValueError, match="cannot store"):
        export_gptq(model, tmp_path / "v1", records, checkpoint_format="gptq")
    with pytest.warns(RuntimeWarning, match="gptq_v2"):
        export_gptq(model, tmp_path / "v2", records)
    assert json.loads((tmp_path / "v2" / "config.json").read_text())["quantization_config"]["checkpoint_format"] == "gptq_v2"
    t = np_load_file(str(tmp_path / "v2" / "model.safetensors"))
    _, w = np_dequantize(t, "model.layers.0.mlp.up_proj", 4, v1=False)
    np.testing.assert_allclose(w, up.weight.data.numpy(), atol=1e-3)
    half = copy.deepcopy(model)
    quantize_modules(half, records, scale_dtype="float16")
    assert torch.equal(logits(load_quantized(tmp_path / "v2")[0]), logits(half))


def test_float_layers_and_block_layout(tmp_path):
    model = make_model("llama")
    records = quantize_tiny(model, lambda n: None if n.endswith("down_proj") else QuantSpec(4))
    export_gptq(model, tmp_path / "g", records)
    qc = json.loads((tmp_path / "g" / "config.json").read_text())["quantization_config"]
    assert qc["block_name_to_quantize"] == "model.layers"
    assert "mlp.down_proj" not in qc["modules_in_block_to_quantize"][0]
    loaded, _ = load_quantized(tmp_path / "g")
    assert isinstance(loaded.model.layers[0].mlp.down_proj, torch.nn.Linear)


@pytest.mark.parametrize("spec_of,msg", [
    (lambda n: QuantSpec(4, granularity="tensor"), "per-channel or per-group"),
    (lambda n: QuantSpec(8) if "q_proj" in n else QuantSpec(4), "one bits/group_size/sym for all layers"),
    (lambda n: None, "has none"),
])
def test_export_refuses_what_the_format_cannot_hold(tmp_path, spec_of, msg):
    model = make_model("llama")
    records = quantize_tiny(model, spec_of)
    with pytest.raises(ValueError, match=msg):
        export_gptq(model, tmp_path / "g", records)
    assert not (tmp_path / "g").exists()


def test_import_rejects_bad_gptq_tensors(tmp_path):
    from safetensors.torch import load_file, save_file

    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=32))
    export_gptq(model, tmp_path / "g", records)
    f = str(tmp_path / "g" / "model.safetensors")
    tensors = load_file(f)
    tensors["model.layers.0.self_attn.q_proj.qzeros"] = torch.zeros(2, 4, dtype=torch.int32)
    save_file(tensors, f)
    with pytest.raises(ValueError, match=r"qzeros has shape \[2, 4\], expected \[2, 8\]"):
        load_quantized(tmp_path / "g")


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_v1_zeros_written_by_word_subtraction_decode_exactly(bits):
    """GPTQModel writes v1 as packed(zero) - packed(1) word by word: a zero of 0 borrows."""
    from ptq.checkpoint.gptq_format import _decode_zeros
    from ptq.packing import pack_codes

    zeros = torch.randint(0, 1 << bits, (3, 64), generator=torch.Generator().manual_seed(bits))
    zeros[0, :5] = 0
    words = pack_codes(zeros, bits).to(torch.int64) - pack_codes(torch.ones_like(zeros), bits).to(torch.int64)
    stored = torch.where((words & 0xFFFFFFFF) >= 2**31, (words & 0xFFFFFFFF) - 2**32, words & 0xFFFFFFFF).to(torch.int32)
    assert torch.equal(_decode_zeros(stored, bits, 64, v1=True), zeros)
