"""``ptq export`` and ``ptq quantize --format compressed-tensors|gguf:*``: conversions and the
wrong inputs (one line, exit code 2, nothing written)."""
from __future__ import annotations

import json

import pytest
from conftest import make_model, make_tokenizer
from test_checkpoint_cli import run

from scripts.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join(" ".join(f"w{(i * 7 + j) % 90}" for j in range(200)) for i in range(20)))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, corpus):
    """Tiny Llama quantized with RTN: W4 g32 symmetric (Q4_0's grid) and W4 g32 asymmetric."""
    root = tmp_path_factory.mktemp("ckpt")
    make_model("llama").save_pretrained(root / "model")
    make_tokenizer().save_pretrained(root / "model")
    out = {}
    for name, flags in {"sym": ["--symmetric"], "asym": []}.items():
        out[name] = root / name
        assert main([str(a) for a in ["quantize", root / "model", "--method", "rtn", "--bits", 4, "--group-size", 32,
                                      *flags, "--calib", corpus, "--output", out[name], "--quiet"]]) == 0
    return out


def _nothing_written(folder) -> bool:
    return not folder.exists() and not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


def test_export_compressed_tensors_reads_back_in_transformers(checkpoints, tmp_path, capsys):
    pytest.importorskip("compressed_tensors")
    import torch
    from transformers import AutoModelForCausalLM

    from ptq.checkpoint import load_quantized

    code, _, err = run(["export", checkpoints["sym"], "--format", "compressed-tensors", "--output", tmp_path / "ct",
                        "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ct" / "ptq.json").read_text())["format"] == "compressed-tensors"
    ids = torch.arange(16).reshape(1, 16)
    ours, _ = load_quantized(checkpoints["sym"])
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "ct", dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, theirs(ids).logits)


@pytest.mark.parametrize("which,fmt,msg", [
    ("asym", "gguf:Q4_0", "Q4_0 cannot hold model.layers.0.self_attn.q_proj exactly"),
    ("asym", "gguf:Q4_0", "gguf:Q8_0 fits"),
    ("sym", "gguf:Q5_K", "unknown format 'gguf:Q5_K'; choose one of"),
    ("sym", "onnx", "unknown format 'onnx'"),
])
def test_export_refusals(checkpoints, tmp_path, capsys, which, fmt, msg):
    code, _, err = run(["export", checkpoints[which], "--format", fmt, "--output", tmp_path / "o", "--quiet"], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    assert _nothing_written(tmp_path / "o")


def test_export_existing_output_needs_overwrite(checkpoints, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    code, _, err = run(["export", checkpoints["sym"], "--format", "compressed-tensors", "--output", tmp_path / "o"], capsys)
    assert code == 2 and "--overwrite" in err
    assert list((tmp_path / "o").iterdir()) == []


def test_export_truncated_checkpoint(checkpoints, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(checkpoints["sym"], bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = run(["export", bad, "--format", "gguf:Q4_0", "--output", tmp_path / "o", "--quiet"], capsys)
    assert code == 2 and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1, err
    assert _nothing_written(tmp_path / "o")


def test_export_not_a_checkpoint(tmp_path, capsys):
    code, _, err = run(["export", tmp_path, "--format", "gguf:Q4_0", "--output", tmp_path / "o"], capsys)
    assert code == 2 and "not a quantized checkpoint" in err


@pytest.mark.parametrize("flags,fmt,msg", [
    (["--method", "rtn", "--bits", "4", "--group-size", "64"], "gguf:Q4_0", "spans q - zero -15..15"),
    (["--method", "rtn", "--bits", "3", "--group-size", "48", "--symmetric"], "gguf:Q4_0", "multiple of 32"),
    (["--method", "llm-int8"], "gguf:Q8_0", "holds weight-only methods"),
    (["--method", "w8a8"], "gguf:Q8_0", "W8A8 goes to --format compressed-tensors"),
    (["--method", "llm-int8"], "compressed-tensors", "no LLM.int8() layout"),
    (["--method", "gptq", "--bits", "4", "--group-size", "32", "--symmetric", "--act-order"], "gguf:Q4_0", "--static-groups"),
    (["--method", "gptq", "--bits", "4", "--group-size", "32", "--act-order"], "compressed-tensors", "--static-groups"),
    (["--method", "rtn"], "gguf:IQ2_XS", "unknown format"),
])
def test_quantize_refuses_formats_early(checkpoints, tmp_path, capsys, flags, fmt, msg):
    model = checkpoints["sym"].parent / "model"
    code, _, err = run(["quantize", model, *flags, "--format", fmt, "--output", tmp_path / "o"], capsys)
    assert code == 2 and msg in err, err
    assert _nothing_written(tmp_path / "o")


def test_quantize_writes_gguf(corpus, tmp_path, capsys):
    """A BPE tokenizer goes into the GGUF as gpt2 tokens and merges."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from conftest import make_bpe_tokenizer

    tok = make_bpe_tokenizer(3 + 256 + 6)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2)).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    code, _, err = run(["quantize", tmp_path / "m", "--method", "rtn", "--bits", "8", "--symmetric",
                        "--format", "gguf:Q8_0", "--calib", corpus, "--output", tmp_path / "g", "--quiet"], capsys)
    assert code == 0, err
    reader = gguf.GGUFReader(tmp_path / "g" / "model.gguf")
    assert reader.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert {t.tensor_type.name for t in reader.tensors if ".ffn_" in t.name and "norm" not in t.name} == {"Q8_0"}
    assert "layers" in json.loads((tmp_path / "g" / "ptq.json").read_text())


def test_quantize_smoothquant_to_compressed_tensors(checkpoints, corpus, tmp_path, capsys):
    pytest.importorskip("compressed_tensors")
    model = checkpoints["sym"].parent / "model"
    code, _, err = run(["quantize", model, "--method", "smoothquant", "--alpha", "0.5", "--act-granularity", "tensor",
                        "--format", "compressed-tensors", "--calib", corpus, "--nsamples", 4, "--seqlen", 32,
                        "--output", tmp_path / "sq", "--quiet"], capsys)
    assert code == 0, err
    qc = json.loads((tmp_path / "sq" / "config.json").read_text())["quantization_config"]
    group = qc["config_groups"]["group_0"]
    assert qc["format"] == "int-quantized" and group["input_activations"]["strategy"] == "tensor"
    assert qc["ignore"] == ["lm_head"]
