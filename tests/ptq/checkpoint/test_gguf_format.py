"""GGUF export, read back by ``transformers`` (``gguf_file=``) and by ``gguf.GGUFReader``: the loaded
weights equal ptq's, tensor types and byte sizes are llama.cpp's, and grids a block type cannot
hold exactly are refused."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from conftest import make_model, quantize_tiny
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from ptq import QuantSpec
from ptq.algorithms import rtn
from ptq.checkpoint.gguf_blocks import BLOCK_BYTES, misfit, pack_blocks
from ptq.checkpoint.gguf_format import GGUF_NAME, export_gguf, head_permutation
from ptq.checkpoint.layer_grid import layer_grid
from ptq.modules import QuantLinear
from ptq.modules.swap import set_submodule
from ptq.modules.w8a8_linear import W8A8Linear


def smol_sized_model(vocab: int, tied: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied, max_position_embeddings=64)
    return AutoModelForCausalLM.from_config(cfg).eval()


def np_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute, as documented there."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_head_permutation_is_convert_hf_to_gguf_permute():
    w = np.arange(48 * 3).reshape(48, 3)
    assert np.array_equal(w[head_permutation(48, 4).numpy()], np_permute(w, 4))


def _quantized_linear(spec: QuantSpec, seed: int = 0, n: int = 128) -> QuantLinear:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(n, 16, bias=False)
    r = rtn(lin.weight.data, spec)
    lin.weight.data.copy_(r.weight)
    return QuantLinear.from_float(lin, spec, r.scale, r.zero)


@pytest.mark.parametrize("spec,qtype", [
    (QuantSpec(4, symmetric=True, granularity="group", group_size=32, scale_dtype="float16"), "Q4_0"),
    (QuantSpec(4, symmetric=True, scale_dtype="float16"), "Q4_0"),
    (QuantSpec(3, granularity="group", group_size=64, scale_dtype="float16"), "Q4_0"),
    (QuantSpec(2, symmetric=True, granularity="group", group_size=32, scale_dtype="float16"), "Q4_0"),
    (QuantSpec(8, symmetric=True, scale_dtype="float16"), "Q8_0"),
    (QuantSpec(4, granularity="group", group_size=32, scale_dtype="float16"), "Q8_0"),
    (QuantSpec(4, symmetric=True, granularity="group", group_size=32, scale_dtype="float16"), "Q4_1"),
], ids=lambda x: x.describe() if isinstance(x, QuantSpec) else x)
def test_blocks_dequantize_to_ptq_weights(spec, qtype):
    """gguf's numpy dequantizer (ggml's formulas) gives back ptq's float32 weight bit for bit."""
    qm = _quantized_linear(spec)
    blocks = pack_blocks(layer_grid(qm), qtype)
    assert blocks.shape == (16, 128 // 32 * BLOCK_BYTES[qtype])
    deq = gguf.quants.dequantize(blocks, getattr(gguf.GGMLQuantizationType, qtype))
    assert np.array_equal(deq, qm.dequantize_weight().numpy())


def test_q4_1_with_float16_minima():
    """Q4_1 holds an asymmetric grid when every m = -scale * zero is a float16 number."""
    spec = QuantSpec(4, granularity="group", group_size=32, scale_dtype="float16")
    torch.manual_seed(1)
    lin = torch.nn.Linear(64, 8, bias=False)
    scale = 2.0 ** torch.randint(-8, -4, (8, 2)).float()
    zero = torch.randint(0, 16, (8, 2)).float()
    q = torch.randint(0, 16, (8, 64)).float()
    lin.weight.data.copy_(scale.repeat_interleave(32, 1) * (q - zero.repeat_interleave(32, 1)))
    qm = QuantLinear.from_float(lin, spec, scale, zero)
    deq = gguf.quants.dequantize(pack_blocks(layer_grid(qm), "Q4_1"), gguf.GGMLQuantizationType.Q4_1)
    assert np.array_equal(deq, qm.dequantize_weight().numpy())


@pytest.mark.parametrize("spec,qtype,msg", [
    (QuantSpec(4, granularity="group", group_size=32, scale_dtype="float16"), "Q4_0", "span -"),
    (QuantSpec(4, symmetric=True, granularity="group", group_size=16, scale_dtype="float16"), "Q4_0", "whole blocks"),
    (QuantSpec(4, symmetric=True, granularity="group", group_size=32), "Q4_0", "float16"),
    (QuantSpec(8, granularity="group", group_size=32, scale_dtype="float16"), "Q8_0", "span"),
    (QuantSpec(8, symmetric=True, scale_dtype="float16"), "Q4_1", "codes q span"),
], ids=lambda x: x.describe() if isinstance(x, QuantSpec) else x)
def test_misfits_are_named(spec, qtype, msg):
    assert msg in (misfit(layer_grid(_quantized_linear(spec, n=96 if "16" in str(spec.group_size) else 128)), qtype) or "")


@pytest.mark.parametrize("spec,qtype", [
    (QuantSpec(4, symmetric=True, granularity="group", group_size=32, scale_dtype="float16"), "Q4_0"),
    (QuantSpec(8, symmetric=True, scale_dtype="float16"), "Q8_0"),
], ids=["Q4_0", "Q8_0"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "lm_head"])
def test_transformers_gguf_loader_reads_ptq_weights(tmp_path, bpe_tokenizer, spec, qtype, tied):
    model = smol_sized_model(len(bpe_tokenizer), tied)
    records = quantize_tiny(model, spec, method="gptq")
    export_gguf(model, tmp_path / "g", qtype, records, tokenizer=bpe_tokenizer)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "g", gguf_file=GGUF_NAME, dtype=torch.float32).eval()
    ref = model.state_dict()
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, ref[name]), name
    ids = torch.randint(0, len(bpe_tokenizer), (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    reader = gguf.GGUFReader(tmp_path / "g" / GGUF_NAME)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == qtype and types["blk.1.ffn_down.weight"] == qtype
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert ("output.weight" in types) is (not tied)
    for t in reader.tensors:
        if t.tensor_type.name == qtype:
            assert t.n_bytes == t.n_elements // 32 * BLOCK_BYTES[qtype]
    assert reader.fields["general.file_type"].contents() == {"Q4_0": 2, "Q8_0": 7}[qtype]
    text = "the other thing in there  # ünïcode"
    tok = AutoTokenizer.from_pretrained(tmp_path / "g", gguf_file=GGUF_NAME)
    assert tok(text)["input_ids"] == bpe_tokenizer(text)["input_ids"]
    assert reader.fields["tokenizer.ggml.merges"].contents()[:2] == ["Ġ t", "h e"]


@pytest.mark.slow
def test_smollm2_tokenizer_built_like_convert_hf_to_gguf(tmp_path, smol_tokenizer):
    """The 49152-token SmolLM2 BPE tokenizer, built from its HF files: tokens, types and merges equal
    those of the GGUF llama.cpp's converter wrote for the same model."""
    from calibration.models.loading import ALIASES

    model = smol_sized_model(len(smol_tokenizer))
    records = quantize_tiny(model, QuantSpec(8, symmetric=True, scale_dtype="float16"))
    export_gguf(model, tmp_path / "g", "Q8_0", records, tokenizer=smol_tokenizer)
    src, out = gguf.GGUFReader(ALIASES["smollm2-135m"]()), gguf.GGUFReader(tmp_path / "g" / GGUF_NAME)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        assert out.fields[key].contents() == src.fields[key].contents(), key


@pytest.mark.slow
def test_tokenizer_copied_from_source_gguf(tmp_path, smol_tokenizer):
    from calibration.models.loading import ALIASES

    source = ALIASES["smollm2-135m"]()
    model = smol_sized_model(len(smol_tokenizer))
    records = quantize_tiny(model, QuantSpec(8, symmetric=True, scale_dtype="float16"))
    export_gguf(model, tmp_path / "g", "Q8_0", records, tokenizer_gguf=source)
    src, out = gguf.GGUFReader(source), gguf.GGUFReader(tmp_path / "g" / GGUF_NAME)
    keys = [k for k in src.fields if k.startswith("tokenizer.")]
    assert keys and all(out.fields[k].contents() == src.fields[k].contents() for k in keys)


@pytest.mark.parametrize("case,msg", [
    ("asym-q4_0", "Q4_0 cannot hold model.layers.0.self_attn.q_proj exactly"),
    ("w8a8", "GGUF holds weight-only grids"),
    ("gpt2", "GGUF export supports llama"),
    ("act-order", "act-order groups"),
])
def test_refusals_write_nothing(tmp_path, bpe_tokenizer, case, msg):
    if case == "gpt2":
        model = make_model("gpt2")
        records = quantize_tiny(model, QuantSpec(4, symmetric=True, scale_dtype="float16"))
    else:
        model = smol_sized_model(len(bpe_tokenizer))
        if case == "w8a8":
            set_submodule(model, "model.layers.0.mlp.up_proj",
                          W8A8Linear.from_float(model.get_submodule("model.layers.0.mlp.up_proj")))
            records = {}
        elif case == "act-order":
            records = quantize_tiny(model, QuantSpec(4, symmetric=True, granularity="group", group_size=32,
                                                     scale_dtype="float16"), method="gptq", act_order=True)
        else:
            records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=32, scale_dtype="float16"))
    with pytest.raises(ValueError, match=msg):
        export_gguf(model, tmp_path / "g", "Q4_0", records, tokenizer=bpe_tokenizer)
    assert list(tmp_path.iterdir()) == []
