"""``ptq quantize`` / ``ptq eval`` under torchrun (two processes, gloo): one process's results, rank 0
writes, and a rank that dies makes the others fail with one clear line and leaves no output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dist_launch import ROOT, finish, rank_env, start
from scripts.cli import main


def quantize_argv(model, corpus, out) -> list[str]:
    return ["quantize", str(model), "--method", "gptq", "--bits", "4", "--group-size", "32", "--act-order",
            "--calib", str(corpus), "--nsamples", "6", "--seqlen", "32", "--batch-size", "2", "--output", str(out),
            "--quiet"]


def eval_argv(model, corpus, json_path) -> list[str]:
    return ["eval", str(model), "--dataset", str(corpus), "--seqlen", "32", "--max-windows", "5",
            "--reference", str(model), "--quiet", "--json", str(json_path)]


def test_torchrun_quantize_and_eval_equal_one_process(tiny_model_dir, corpus, tmp_path, one_thread):
    """One ``torchrun --nproc-per-node 2`` launch runs ``ptq quantize`` (GPTQ) then ``ptq eval``; meanwhile
    one process runs the same two commands here."""
    two = tmp_path / "two"
    env = rank_env(0, 1, 0)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key)  # torchrun sets its own
    steps = [quantize_argv(tiny_model_dir, corpus, two), eval_argv(tiny_model_dir, corpus, tmp_path / "two.json")]
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(Path(__file__).with_name("dist_cli_steps.py")), json.dumps(steps)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert main(quantize_argv(tiny_model_dir, corpus, tmp_path / "one")) == 0
    assert main(eval_argv(tiny_model_dir, corpus, tmp_path / "one.json")) == 0
    out, err = proc.communicate(timeout=900)  # a loaded 2-core machine runs three processes here
    assert proc.returncode == 0, err[-3000:]
    assert out.count("perplexity") == 1  # rank 0 reports, alone

    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(two / "model.safetensors")
    assert a.keys() == b.keys()
    words = same = 0
    for key, t in a.items():
        if not t.is_floating_point():  # packed codes (int32 words of 8 codes), g_idx
            words += t.numel()
            same += int((t == b[key]).sum())
    assert words and same / words >= 0.999  # a word is equal only if all its codes are
    report = json.loads((two / "ptq.json").read_text())
    assert report["processes"] == 2 and report["steps"][0]["layers"] == 14
    assert not list(tmp_path.glob(".two*")), "no lock, work or temporary folder left beside the output"

    one = json.loads((tmp_path / "one.json").read_text())["perplexity"][str(corpus)]
    two = json.loads((tmp_path / "two.json").read_text())["perplexity"][str(corpus)]
    assert two["windows"] == one["windows"] == 5 and two["tokens"] == one["tokens"]
    assert two["ppl"] == pytest.approx(one["ppl"], rel=1e-6)
    assert two["window_nll"] == pytest.approx(one["window_nll"], rel=1e-6)
    for key in ("kl_mean", "top1", "ppl_ratio", "kl_max"):
        assert two["kl"][key] == pytest.approx(one["kl"][key], rel=1e-6, abs=1e-12)


def test_a_rank_that_dies_stops_the_others_with_one_line(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "q"
    ranks = finish(start(["-m", "scripts.cli", *quantize_argv(tiny_model_dir, corpus, out), "--dist-timeout", "30"],
                         extra_env={"PTQ_DIST_TEST_EXIT": "1:1"}), timeout=240)  # rank 1 dies at its 1st exchange
    assert ranks[1].returncode == 17
    assert ranks[0].returncode == 2, ranks[0].stderr[-3000:]
    lines = ranks[0].stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ptq quantize: error: rank 0 of 2: ") and "rerun" in lines[0]
    assert "Traceback" not in ranks[0].stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".q.tmp")]


def test_resume_refused_under_torchrun(tiny_model_dir, corpus, tmp_path, monkeypatch, capsys):
    from calibration import distributed

    monkeypatch.setattr(distributed, "active", lambda: True)
    assert main([*quantize_argv(tiny_model_dir, corpus, tmp_path / "q"), "--resume"]) == 2
    assert "--resume keeps a work folder" in capsys.readouterr().err
