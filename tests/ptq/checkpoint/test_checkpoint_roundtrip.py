"""save_quantized / load_quantized: same logits, packed layers, config, files, atomic writes."""
from __future__ import annotations

import json

import pytest
import torch
from ckpt_helpers import block_linears, logits, make_model, quantize_tiny
from safetensors import safe_open

from ptq import QuantSpec
from ptq.checkpoint import is_quantized_checkpoint, load_quantized, save_quantized
from ptq.modules import QuantLinear, quantize_modules

CASES = [
    ("llama", QuantSpec(4, granularity="group", group_size=32), "rtn", False),
    ("llama", QuantSpec(3, symmetric=True), "rtn", False),
    ("llama", QuantSpec(2, granularity="tensor"), "rtn", False),
    ("llama", QuantSpec(8, granularity="group", group_size=16), "gptq", True),
    ("gpt2", QuantSpec(4, granularity="group", group_size=32), "gptq", False),
]


@pytest.mark.parametrize("arch,spec,method,act_order", CASES, ids=lambda c: getattr(c, "describe", lambda: str(c))())
def test_roundtrip_logits_bitwise(tmp_path, tokenizer, arch, spec, method, act_order):
    model = make_model(arch)
    records = quantize_tiny(model, spec, method=method, act_order=act_order)
    ref = logits(model)
    out = save_quantized(model, tmp_path / "ckpt", records, extra={"note": "report"}, tokenizer=tokenizer)
    assert is_quantized_checkpoint(out)
    loaded, tok = load_quantized(out)
    if arch == "llama":
        assert torch.equal(logits(loaded), ref)
    else:  # Conv1D computes x @ W with addmm, QuantLinear F.linear: the GEMM kernel may differ
        torch.testing.assert_close(logits(loaded), ref, rtol=1e-5, atol=1e-5)
    qmods = {n: m for n, m in loaded.named_modules() if isinstance(m, QuantLinear)}
    assert sorted(qmods) == sorted(records)
    assert all(not hasattr(m, "weight") for m in qmods.values())
    if act_order:
        assert any(m.g_idx is not None for m in qmods.values())
    assert tok is not None and tok("w1 w2")["input_ids"] == tokenizer("w1 w2")["input_ids"]
    if arch == "llama":
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight  # tied again
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "ptq.json", "tokenizer.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert json.loads((out / "ptq.json").read_text()) == {"note": "report"}
    assert not list(tmp_path.glob(".ckpt.*"))  # no temporary folder left


def test_config_overrides_and_float_modules(tmp_path):
    model = make_model("llama")
    default = QuantSpec(4, granularity="group", group_size=32)

    def spec_of(name):
        if name == "model.layers.1.mlp.down_proj":
            return None
        return QuantSpec(8) if name == "model.layers.0.self_attn.o_proj" else default

    records = quantize_tiny(model, spec_of)
    ref = logits(model)
    save_quantized(model, tmp_path / "ck", records)
    qc = json.loads((tmp_path / "ck" / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "ptq" and qc["format_version"] == 1 and qc["method"] == "rtn"
    assert (qc["bits"], qc["granularity"], qc["group_size"], qc["symmetric"], qc["act_order"]) == (4, "group", 32, False, False)
    assert list(qc["overrides"]) == ["model.layers.0.self_attn.o_proj"]
    assert qc["overrides"]["model.layers.0.self_attn.o_proj"]["bits"] == 8
    assert qc["modules_in_float"] == ["lm_head", "model.layers.1.mlp.down_proj"]
    assert "ptq_version" in qc
    loaded, tok = load_quantized(tmp_path / "ck")
    assert tok is None
    assert torch.equal(logits(loaded), ref)
    assert isinstance(loaded.model.layers[1].mlp.down_proj, torch.nn.Linear)
    assert loaded.model.layers[0].self_attn.o_proj.spec.bits == 8


def test_resave_loaded_model_and_swapped_model(tmp_path):
    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=16), method="gptq", act_order=True)
    ref = logits(model)
    quantize_modules(model, records)  # already swapped: stored as they are
    save_quantized(model, tmp_path / "a")
    loaded, _ = load_quantized(tmp_path / "a")
    save_quantized(loaded, tmp_path / "b")
    again, _ = load_quantized(tmp_path / "b")
    assert torch.equal(logits(again), ref)
    qc = json.loads((tmp_path / "b" / "config.json").read_text())["quantization_config"]
    assert qc["method"] == "gptq" and qc["act_order"] is True


def test_quantized_layers_are_stored_packed(tmp_path):
    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=32))
    save_quantized(model, tmp_path / "ck", records)
    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        name = "model.layers.0.mlp.up_proj"
        assert f"{name}.weight" not in keys
        assert f.get_slice(f"{name}.qweight").get_dtype() == "I32"
        assert f.get_slice(f"{name}.qweight").get_shape() == [128, 64 * 4 // 32]
        assert f.get_slice(f"{name}.scales").get_shape() == [128, 2]
        assert f.get_slice(f"{name}.qzeros").get_shape() == [2, 128 * 4 // 32]
    assert "lm_head.weight" not in keys and "model.embed_tokens.weight" in keys  # tied: stored once


def test_load_in_bfloat16(tmp_path):
    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(4))
    ref = logits(model)
    save_quantized(model, tmp_path / "ck", records)
    loaded, _ = load_quantized(tmp_path / "ck", dtype="bfloat16")
    assert loaded.model.embed_tokens.weight.dtype == torch.bfloat16
    q = loaded.model.layers[0].mlp.up_proj
    assert q.scales.dtype == torch.float32 and q.qweight.dtype == torch.int32
    torch.testing.assert_close(logits(loaded).float(), ref, rtol=0.1, atol=0.1)


def test_atomic_write_and_overwrite(tmp_path, tokenizer):
    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(4))
    target = tmp_path / "ck"
    save_quantized(model, target, records)
    with pytest.raises(FileExistsError):
        save_quantized(model, target, records)

    class Broken:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_quantized(model, target, records, tokenizer=Broken(), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # old checkpoint intact, no temp folder
    load_quantized(target)
    save_quantized(model, target, records, tokenizer=tokenizer, overwrite=True)
    assert (target / "tokenizer.json").is_file()


def test_records_of_unpackable_method_are_refused(tmp_path):
    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(8))
    next(iter(records.values())).method = "w8a8"
    with pytest.raises(ValueError, match="no packed module"):
        save_quantized(model, tmp_path / "ck", records)
    assert not (tmp_path / "ck").exists()


def test_memory_loaded_model_holds_packed_weights(tmp_path):
    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=32))
    save_quantized(model, tmp_path / "ck", records)
    loaded, _ = load_quantized(tmp_path / "ck")
    nbytes = lambda m: sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))  # noqa: E731
    linear_params = sum(m.weight.numel() for m in block_linears(model).values())
    assert nbytes(model) - nbytes(loaded) > 0.8 * linear_params * 4  # ~4 of 4.5 bytes per weight saved
