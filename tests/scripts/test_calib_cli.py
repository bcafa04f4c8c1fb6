"""`ptq quantize` calibration flags: mixtures (--calib A:0.5,B:0.5), --calib-bos, GPTQ --diag-shrink."""
from __future__ import annotations

import json

import pytest

from scripts.cli import main


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mix")
    paths = []
    for name in ("a", "b"):
        path = folder / f"{name}.txt"
        path.write_text("\n\n".join(f"{name} paragraph {i}. " + " ".join(f"{name}{(i * 7 + j) % 97}" for j in range(120))
                                    for i in range(30)))
        paths.append(path)
    return paths


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_gptq_on_a_mixture_with_bos_and_diag_shrink(tiny_model_dir, smol_tokenizer, corpora, tmp_path, capsys):
    a, b = corpora
    out = tmp_path / "q"
    code, _, err = run(["quantize", tiny_model_dir, "--method", "gptq", "--bits", "4", "--diag-shrink", "0.5",
                        "--calib", f"{a}:0.5,{b}:0.5", "--calib-bos", "on", "--nsamples", 4, "--seqlen", 32,
                        "--output", out, "--quiet"], capsys)
    assert code == 0, err
    report = json.loads((out / "ptq.json").read_text())
    assert report["recipe"][0]["diag_shrink"] == 0.5
    assert report["data"]["calib"] == f"{a}:0.5,{b}:0.5" and report["data"]["bos"] == smol_tokenizer.bos_token_id


@pytest.mark.parametrize("flags, message", [
    (["--calib", "web-ot:0.5,pydocs:0.6"], "calibration mixture shares sum to 1.1, not 1"),
    (["--calib", "web-ot:0.5,nope:0.5"], "unknown dataset 'nope'"),
    (["--method", "gptq", "--diag-shrink", "2"], "diag-shrink must be a number from 0 to 1"),
])
def test_calibration_mistakes_exit_2_before_loading(flags, message, tmp_path, capsys):
    code, _, err = run(["quantize", "no-such-model-xyz", "--output", tmp_path / "out", "--quiet",
                        "--method", "gptq", *flags], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
