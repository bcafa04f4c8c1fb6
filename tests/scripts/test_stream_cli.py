"""``ptq quantize --stream`` / ``ptq eval --stream`` / ``ptq plan --stream`` on a tiny sharded model:
the same checkpoint and perplexity as in memory, clear refusals, and the plan's automatic choice."""
from __future__ import annotations

import json

import pytest
import torch

from ptq.checkpoint.files import read_tensors
from scripts.cli import main


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, smol_tokenizer):
    """A tiny random Llama (2 blocks, untied head) with SmolLM2's tokenizer, in two safetensors shards."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("stream-cli") / "tiny"
    LlamaForCausalLM(cfg).save_pretrained(path, max_shard_size="15MB")
    smol_tokenizer.save_pretrained(path)
    assert len(set(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"].values())) == 2
    return path


def quantize(model, corpus, out, *extra):
    return main(["quantize", str(model), "--method", "gptq", "--bits", "4", "--group-size", "32", "--calib",
                 str(corpus), "--nsamples", "4", "--seqlen", "32", "--batch-size", "2", "--output", str(out),
                 "--quiet", *extra])


@pytest.fixture(scope="module")
def outputs(sharded, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("stream-out")
    assert quantize(sharded, corpus, root / "memory") == 0
    assert quantize(sharded, corpus, root / "streamed", "--stream") == 0
    return root / "memory", root / "streamed"


def test_streamed_quantize_equals_in_memory(outputs):
    memory, streamed = outputs
    a, b = read_tensors(memory), read_tensors(streamed)
    assert set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    assert json.loads((memory / "config.json").read_text()) == json.loads((streamed / "config.json").read_text())
    report = json.loads((streamed / "ptq.json").read_text())
    assert report["stream"]["shards"] == 3 and report["plan"]["work_folder_mib"] == 0
    assert not list(streamed.parent.glob(".streamed*"))  # no temporary or work folder left behind


def test_streamed_eval_equals_in_memory(outputs, corpus, tmp_path, capsys):
    _, streamed = outputs
    common = ["eval", str(streamed), "--dataset", str(corpus), "--split", "train", "--seqlen", "32",
              "--max-windows", "4", "--reference", "none", "--quiet"]
    assert main([*common, "--json", str(tmp_path / "a.json")]) == 0
    assert main([*common, "--stream", "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text())["perplexity"][str(corpus)] for n in ("a.json", "b.json"))
    assert a["window_nll"] == pytest.approx(b["window_nll"], rel=1e-6, abs=0) and a["tokens"] == b["tokens"]


@pytest.mark.parametrize("extra, message", [
    (["--stream", "--format", "gptq"], "--format ptq only"),
])
def test_quantize_refusals(sharded, corpus, tmp_path, capsys, extra, message):
    assert quantize(sharded, corpus, tmp_path / "o", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_eval_refusals(outputs, corpus, capsys):
    _, streamed = outputs
    common = ["eval", str(streamed), "--dataset", str(corpus), "--seqlen", "32", "--max-windows", "2", "--stream"]
    assert main([*common, "--tasks", "ptq_bible_lastword"]) == 2
    assert "--tasks" in capsys.readouterr().err
    assert main([*common, "--reference", str(streamed)]) == 2
    assert "no float reference" in capsys.readouterr().err


def test_plan_streams_when_the_model_does_not_fit(sharded, corpus, monkeypatch, capsys):
    """The plan's verdict decides: an in-memory run that does not fit, a streamed one that does."""
    from calibration.plan import check

    args = ["plan", str(sharded), "--method", "gptq", "--bits", "4", "--calib", str(corpus), "--nsamples", "4",
            "--seqlen", "32", "--json"]
    assert main(args) == 0
    memory = json.loads(capsys.readouterr().out)
    assert main([*args, "--stream"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert memory["stream"] is False and streamed["stream"] is True
    assert streamed["phases_mib"]["calibrate"] < memory["phases_mib"]["calibrate"]
    # the machine: room for the streamed run, not for the in-memory one
    between = (streamed["host_peak_mib"] + memory["host_peak_mib"]) / 2 * 2**20
    monkeypatch.setattr(check, "available_memory", lambda: int(between))
    monkeypatch.setattr(check, "current_rss", lambda: 0)
    assert main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["stream"] is True and "streaming the model from disk" in captured.err
    assert main([*args, "--no-stream"]) == 2
