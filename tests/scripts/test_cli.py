"""The ptq command line: the main flows on a tiny local model, and every user mistake -> exit 2."""
from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest

from scripts.cli import main


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    paragraphs = [f"Paragraph {i}. " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(120)) for i in range(30)]
    path.write_text("\n\n".join(paragraphs))
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("quantize", "eval", "inspect", "reproduce")), out


def test_quantize_then_eval(model_dir, corpus, tmp_path, capsys):
    out = tmp_path / "q"
    code, _, err = run(["quantize", model_dir, "--method", "rtn", "--bits", "4", "--group-size", "32",
                        "--calib", corpus, "--nsamples", 4, "--seqlen", 32, "--output", out, "--quiet"], capsys)
    assert code == 0, err
    report = json.loads((out / "ptq.json").read_text())
    assert report["recipe"][0]["step"] == "rtn" and report["recipe"][0]["group_size"] == 32
    assert len(report["layers"]) == 2 * 7 and "versions" in report and "quantize" in report["timings_s"]
    assert not list(tmp_path.glob(".q.tmp-*"))
    code, stdout, err = run(["eval", out, "--dataset", corpus, "--seqlen", 32, "--max-windows", 3,
                             "--json", tmp_path / "e.json", "--quiet"], capsys)
    assert code == 0, err
    assert "perplexity" in stdout and json.loads((tmp_path / "e.json").read_text())["perplexity"]


def test_inspect_prints_a_row_per_layer(model_dir, corpus, capsys):
    code, stdout, err = run(["inspect", model_dir, "--calib", corpus, "--nsamples", 2, "--seqlen", 32, "--quiet"], capsys)
    assert code == 0, err
    assert stdout.count("| model.layers.") == 2 * 7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["quantize", "no-such-model-xyz", "--output", "{out}"], "no-such-model-xyz"),
        (["quantize", "{model}", "--bits", "9", "--output", "{out}"], "bits must be from 2 to 8"),
        (["quantize", "{model}", "--granularity", "group", "--group-size", "48", "--output", "{out}"],
         "group_size 48 does not divide"),
        (["quantize", "{model}", "--output", "{existing}"], "already exists; pass --overwrite"),
        (["eval", "{model}", "--dataset", "no-such-dataset", "--max-windows", "1", "--seqlen", "32"],
         "unknown dataset 'no-such-dataset'"),
        (["quantize", "{model}", "--observer", "nope", "--output", "{out}"], "unknown observer 'nope'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, message, model_dir, tmp_path, capsys):
    existing = tmp_path / "exists"
    existing.mkdir()
    argv = [a.format(model=model_dir, out=tmp_path / "out", existing=existing) for a in argv]
    code, _, err = run(argv + ["--quiet"], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_no_disk_space_is_a_clear_error(model_dir, tmp_path, capsys, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    code, _, err = run(["quantize", model_dir, "--output", tmp_path / "out", "--quiet"], capsys)
    assert code == 2 and "not enough disk space" in err
    assert not (tmp_path / "out").exists()


def test_interrupted_write_leaves_nothing(model_dir, tmp_path, capsys, monkeypatch):
    import scripts.commands.quantize as q

    def boom(*a, **k):
        raise OSError(28, "No space left on device", "model.safetensors")

    monkeypatch.setattr(q, "write_json", boom)
    code, _, err = run(["quantize", model_dir, "--output", tmp_path / "out", "--quiet"], capsys)
    assert code == 2 and "no space left" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
