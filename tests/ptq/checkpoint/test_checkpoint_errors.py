"""Loading what ptq did not write: one clear ValueError each, nothing executed from the folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from ckpt_helpers import make_model, quantize_tiny
from safetensors.torch import load_file, save_file

from ptq import QuantSpec
from ptq.checkpoint import is_quantized_checkpoint, load_quantized, save_quantized


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    model = make_model("llama")
    records = quantize_tiny(model, QuantSpec(4, granularity="group", group_size=32))
    return save_quantized(model, tmp_path_factory.mktemp("ck") / "ck", records)


@pytest.fixture
def ckpt(saved, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(saved, dst)
    return dst


def edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization_config"].update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def edit_tensor(folder: Path, key: str, value: torch.Tensor) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    tensors[key] = value
    save_file(tensors, str(folder / "model.safetensors"))


QW = "model.layers.0.self_attn.q_proj.qweight"
SC = "model.layers.0.self_attn.q_proj.scales"


def test_truncated_file(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_quantized(ckpt)


def test_wrong_shape(ckpt):
    edit_tensor(ckpt, QW, torch.zeros(64, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"q_proj.qweight has shape \[64, 4\], expected \[64, 8\]"):
        load_quantized(ckpt)


@pytest.mark.parametrize("key,value,msg", [
    (QW, torch.zeros(64, 8, dtype=torch.int64), "qweight has dtype torch.int64, expected torch.int32"),
    (SC, torch.ones(64, 2, dtype=torch.float64), "scales has dtype torch.float64, expected torch.float32"),
    ("model.norm.weight", torch.ones(64, dtype=torch.int32), "norm.weight has dtype torch.int32"),
])
def test_wrong_dtype(ckpt, key, value, msg):
    edit_tensor(ckpt, key, value)
    with pytest.raises(ValueError, match=msg):
        load_quantized(ckpt)


def test_missing_and_unexpected_tensors(ckpt, tmp_path):
    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["model.norm.weight"]
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(ValueError, match="lacks 1 tensor"):
        load_quantized(ckpt)
    edit_tensor(ckpt, "model.extra", torch.zeros(1))
    with pytest.raises(ValueError, match="tensors the model does not"):
        load_quantized(ckpt)


@pytest.mark.parametrize("changes,msg", [
    ({"method": "quip"}, "unknown method 'quip'"),
    ({"kind": "teleport"}, "unknown quantized module kind 'teleport'"),
    ({"format_version": 2}, "format_version 2, written by a newer ptq"),
    ({"format_version": "1"}, "format_version must be a positive integer"),
    ({"quant_method": "awq"}, "unsupported quant_method 'awq'"),
    ({"bits": 9}, "bits must be from 2 to 8"),
    ({"scale_dtype": "int8"}, "scale_dtype must be float16 or float32"),
    ({"modules_in_float": ["lm_head", "model.nope"]}, "layers the model does not have"),
])
def test_bad_quantization_config(ckpt, changes, msg):
    edit_config(ckpt, **changes)
    with pytest.raises(ValueError, match=msg):
        load_quantized(ckpt)


def test_not_a_checkpoint(tmp_path, ckpt):
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        load_quantized(tmp_path / "nothing")
    (ckpt / "config.json").write_text("{not json")
    assert not is_quantized_checkpoint(ckpt)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_quantized(ckpt)


def test_pickle_weights_are_not_loaded(ckpt):
    (ckpt / "model.safetensors").rename(ckpt / "pytorch_model.bin")
    with pytest.raises(ValueError, match="only pickle weights"):
        load_quantized(ckpt)


def test_no_code_from_the_folder_runs(ckpt, tmp_path):
    marker = tmp_path / "executed"
    (ckpt / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nclass Evil: pass\n")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "modeling_evil.Evil", "AutoModelForCausalLM": "modeling_evil.Evil"}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    model, _ = load_quantized(ckpt)
    assert type(model).__name__ == "LlamaForCausalLM" and not marker.exists()


def test_is_quantized_checkpoint(saved, tmp_path):
    assert is_quantized_checkpoint(saved)
    model = make_model("llama")
    model.save_pretrained(tmp_path / "plain")
    assert not is_quantized_checkpoint(tmp_path / "plain")
    assert not is_quantized_checkpoint(tmp_path / "missing")
