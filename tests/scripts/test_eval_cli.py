"""``ptq eval``: KL to the float model a quantized folder came from, SEs, windows, BOS flags, tasks."""
from __future__ import annotations

import json

import pytest

from scripts.cli import main
from tests.scripts.test_cli import corpus  # noqa: F401 - the same small text corpus fixture


@pytest.fixture(scope="module")
def quantized(tiny_model_dir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "w4"
    assert main(["quantize", str(tiny_model_dir), "--method", "rtn", "--bits", "3", "--calib", str(corpus),
                 "--nsamples", "2", "--seqlen", "32", "--output", str(out), "--quiet"]) == 0
    return out


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_quantized_folder_is_compared_with_its_source(quantized, tiny_model_dir, corpus, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = ["eval", quantized, "--dataset", corpus, "--seqlen", 32, "--max-windows", 4, "--quiet",
            "--reference-cache", cache, "--json", tmp_path / "e.json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert f"vs {tiny_model_dir}: KL" in out and "same top token" in out and " ± " in out
    rec = json.loads((tmp_path / "e.json").read_text())
    assert rec["reference"] == str(tiny_model_dir) and rec["bos"] is False
    r = rec["perplexity"][str(corpus)]
    assert r["kl"]["kl_mean"] > 0 and 0 < r["kl"]["top1"] <= 1 and r["ppl_se"] > 0 and len(r["window_nll"]) == 4
    assert len(list(cache.glob("*.safetensors"))) == 1
    code, out2, _ = run(argv, capsys)  # the second run reads the cache: same numbers
    assert code == 0 and out2.splitlines()[1] == out.splitlines()[1]
    # exact KL with the float model in memory: >= the top-k lower bound
    code, _, err = run(argv[:-2] + ["--kl-topk", 0, "--json", tmp_path / "x.json"], capsys)
    assert code == 0, err
    exact = json.loads((tmp_path / "x.json").read_text())["perplexity"][str(corpus)]["kl"]
    assert exact["topk"] is None and exact["kl_mean"] >= r["kl"]["kl_mean"] - 1e-6


def test_float_model_window_seed_and_no_reference(tiny_model_dir, corpus, tmp_path, capsys):
    code, out, err = run(["eval", tiny_model_dir, "--dataset", corpus, "--seqlen", 32, "--max-windows", 3,
                          "--window-seed", 1, "--quiet", "--json", tmp_path / "e.json"], capsys)
    assert code == 0, err
    assert "KL" not in out
    r = json.loads((tmp_path / "e.json").read_text())["perplexity"][str(corpus)]
    assert r["window_seed"] == 1 and r["window_begins"] != [0, 32, 64]


@pytest.mark.parametrize("extra, message", [
    (["--window-seed", 1, "--stride", 16], "--window-seed samples non-overlapping windows"),
    (["--kl-topk", -1], "--kl-topk must be at least 0"),
    (["--limit", 0], "--limit must be positive"),
])
def test_eval_mistakes_exit_2(extra, message, tiny_model_dir, corpus, capsys):
    code, _, err = run(["eval", tiny_model_dir, "--dataset", corpus, "--seqlen", 32, "--quiet", *extra], capsys)
    assert code == 2 and message in err, err
