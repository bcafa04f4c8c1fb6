"""``ptq quantize --format ptq|gptq|float`` and ``ptq eval`` on the written folder."""
from __future__ import annotations

import json

import pytest
from ckpt_helpers import make_model, make_tokenizer

from scripts.cli import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    make_model("llama").save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize("flags,msg", [
    (["--granularity", "tensor"], "per-channel or per-group"),
])
def test_gptq_format_refuses_early(model_dir, tmp_path, capsys, flags, msg):
    code, _, err = run(["quantize", model_dir, "--format", "gptq", *flags, "--output", tmp_path / "o"], capsys)
    assert code == 2 and msg in err
    assert not (tmp_path / "o").exists()


def _has_loader_and_evaluator() -> bool:
    try:
        from calibration.models import load_model  # noqa: F401
        from evaluations import footprint, perplexity  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_loader_and_evaluator(), reason="calibration.models.load_model / evaluations not there yet")
@pytest.mark.parametrize("fmt,quant_method", [("ptq", "ptq"), ("gptq", "gptq")])
def test_quantize_then_eval_checkpoint(model_dir, tmp_path, capsys, fmt, quant_method):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(f"w{(i * 7 + j) % 90}" for j in range(200)) for i in range(20)))
    out = tmp_path / "q"
    code, _, err = run(["quantize", model_dir, "--method", "rtn", "--bits", "4", "--group-size", "32",
                        "--format", fmt, "--calib", corpus, "--output", out, "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["quantization_config"]["quant_method"] == quant_method
    assert "layers" in json.loads((out / "ptq.json").read_text())
    code, stdout, err = run(["eval", out, "--dataset", corpus, "--seqlen", 32, "--max-windows", 2, "--quiet"], capsys)
    assert code == 0, err
    assert "perplexity" in stdout
