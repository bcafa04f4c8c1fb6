"""compressed-tensors export, read back by ``transformers`` (with the ``compressed-tensors`` package),
never by ptq's own reader: the loaded model must compute exactly what ptq's does."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import logits, make_model, make_tokenizer, quantize_tiny

from ptq import QuantSpec
from ptq.checkpoint.compressed_tensors_format import export_compressed_tensors
from ptq.modules import quantize_modules
from ptq.modules.swap import set_submodule
from ptq.modules.w8a8_linear import W8A8Linear

pytest.importorskip("compressed_tensors")
from transformers import AutoModelForCausalLM, CompressedTensorsConfig  # noqa: E402

SYMMETRIC = [QuantSpec(4, symmetric=True, scale_dtype="float16"),
             QuantSpec(3, symmetric=True, granularity="group", group_size=16),
             QuantSpec(8, symmetric=True, granularity="group", group_size=32, scale_dtype="float16")]


def _load(path, dequantize: bool = False):
    kw = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if dequantize else {}
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw).eval()


@pytest.mark.parametrize("spec", SYMMETRIC, ids=lambda s: s.describe())
def test_symmetric_pack_quantized_loads_with_plain_from_pretrained(tmp_path, spec):
    model = make_model()
    records = quantize_tiny(model, spec, method="gptq")
    export_compressed_tensors(model, tmp_path / "ct", records, tokenizer=make_tokenizer())
    qc = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized"
    w = qc["config_groups"]["group_0"]["weights"]
    assert (w["num_bits"], w["symmetric"], w["strategy"]) == (spec.bits, True, spec.granularity)
    assert qc["ignore"] == ["lm_head"]  # a Linear (tied to the embedding) that stays float
    assert torch.equal(logits(_load(tmp_path / "ct")), logits(model))


def test_asymmetric_group_weights_equal_ptq(tmp_path):
    """Asymmetric zero points (``zp = zero - 2**(b-1)``): transformers 5.24 + compressed-tensors 0.20 read
    them with ``dequantize=True`` (plain loading of asymmetric pack-quantized fails upstream)."""
    model = make_model()
    spec = QuantSpec(4, granularity="group", group_size=32, scale_dtype="float16")
    records = quantize_tiny(model, spec)
    export_compressed_tensors(model, tmp_path / "ct", records)
    loaded = _load(tmp_path / "ct", dequantize=True)
    ref = dict(model.named_parameters())
    for name, p in loaded.named_parameters():
        assert torch.equal(p, ref[name]), name
    assert torch.equal(logits(loaded), logits(model))


def test_lm_head_in_float_is_ignored(tmp_path):
    from transformers import LlamaConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False)).eval()
    records = quantize_tiny(model, QuantSpec(4, symmetric=True, scale_dtype="float16"))
    export_compressed_tensors(model, tmp_path / "ct", records)
    assert json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]["ignore"] == ["lm_head"]
    assert torch.equal(logits(_load(tmp_path / "ct")), logits(model))


@pytest.mark.parametrize("act", ["per-token", "static"])
def test_w8a8_is_int_quantized(tmp_path, act):
    model = make_model()
    for name in [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]:
        set_submodule(model, name, W8A8Linear.from_float(model.get_submodule(name), act=act,
                                                         act_scale=0.05 if act == "static" else None, mode="fake"))
    export_compressed_tensors(model, tmp_path / "ct")
    qc = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    group = qc["config_groups"]["group_0"]
    assert qc["format"] == "int-quantized"
    assert group["input_activations"]["strategy"] == ("token" if act == "per-token" else "tensor")
    assert group["input_activations"]["dynamic"] is (act == "per-token")
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "ct" / "model.safetensors"))
    q = model.get_submodule("model.layers.0.mlp.up_proj")
    assert torch.equal(t["model.layers.0.mlp.up_proj.weight"], q.qweight)
    assert torch.equal(t["model.layers.0.mlp.up_proj.weight_scale"].reshape(-1), q.weight_scale)
    assert ("model.layers.0.mlp.up_proj.input_scale" in t) is (act == "static")
    loaded = _load(tmp_path / "ct")
    ref = logits(model)
    # compressed-tensors' own activation grid (scale max|x| / 127.5, codes -128..127) is not ptq's (max|x| / 127)
    assert float((logits(loaded) - ref).abs().max()) < 0.05 * float(ref.abs().max())


def test_act_order_groups_refused(tmp_path):
    model = make_model()
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=16), method="gptq", act_order=True)
    with pytest.raises(ValueError, match="act-order"):
        export_compressed_tensors(model, tmp_path / "ct", records)
    assert not (tmp_path / "ct").exists()


def test_packed_model_exports_the_same(tmp_path):
    """A model whose layers are already QuantLinear (a loaded ptq checkpoint) exports the same tensors."""
    model = make_model()
    records = quantize_tiny(model, SYMMETRIC[0])
    export_compressed_tensors(model, tmp_path / "a", records)
    quantize_modules(model, records)
    export_compressed_tensors(model, tmp_path / "b")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
