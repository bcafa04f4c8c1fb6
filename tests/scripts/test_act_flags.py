"""``ptq quantize`` activation flags (--act-bits, --act-granularity, --act-observer): recipes, mistakes, a run."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from calibration.recipes import Recipe, W8A8Step
from scripts.cli import main
from scripts.commands import quantize


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    quantize.add_arguments(p)
    return p.parse_args(["some-model", "--output", "unused-dir", *argv])


def _recipe(*argv: str) -> list[dict]:
    return quantize.build_recipe(_args(*argv)).to_list()


@pytest.mark.parametrize(
    "argv, step",
    [
        (["--act-granularity", "tensor"], W8A8Step(act="static")),
        (["--act-granularity", "tensor", "--act-observer", "percentile"], W8A8Step(act="static", act_observer="percentile")),
        ([], W8A8Step(act="per-token")),
        (["--act-granularity", "token", "--symmetric", "--granularity", "channel", "--compute", "fake"],
         W8A8Step(act="per-token", mode="fake")),
    ],
)
def test_rtn_act_bits_8_is_naive_w8a8(argv: list[str], step: W8A8Step) -> None:
    assert _recipe("--method", "rtn", "--bits", "8", "--act-bits", "8", *argv) == Recipe([step]).to_list()


def test_w8a8_method_is_rtn_w8_a8_and_rtn_alone_stays_weight_only() -> None:
    for act in ("token", "tensor"):
        assert _recipe("--method", "w8a8", "--act-granularity", act) == _recipe(
            "--method", "rtn", "--bits", "8", "--act-bits", "8", "--act-granularity", act)
    (rtn,) = _recipe("--method", "rtn", "--bits", "8")
    assert rtn["step"] == "rtn" and rtn["bits"] == 8


@pytest.mark.parametrize("flags, act", [(["--act-granularity", "tensor"], "static"),
                                        (["--act-granularity", "token"], "per-token"), ([], "per-token")])
def test_smoothquant_act_granularity_reaches_both_steps(flags: list[str], act: str) -> None:
    sq, w = _recipe("--method", "smoothquant", "--alpha", "auto", *flags)
    assert (sq["step"], sq["alpha"], sq["act"]) == ("smoothquant", "auto", act)
    assert (w["step"], w["act"]) == ("w8a8", act)
    assert _recipe("--method", "smoothquant", "--act-bits", "8", *flags) == _recipe("--method", "smoothquant", *flags)


def test_smoothquant_act_stat_flag() -> None:
    sq, _ = _recipe("--method", "smoothquant", "--act-stat", "rms")
    assert sq["act_stat"] == "rms" and sq["alpha"] == 0.5
    assert "act_stat" not in _recipe("--method", "smoothquant", "--alpha", "auto")[0]
    assert _recipe("--method", "smoothquant", "--alpha", "auto", "--act-stat", "rms")[0]["act_stat"] == "rms"


@pytest.mark.parametrize("flag, value", [("--search-metric", "token-relative"), ("--search-scope", "group")])
def test_smoothquant_search_flags(flag: str, value: str) -> None:
    key = flag[2:].replace("-", "_")
    sq, _ = _recipe("--method", "smoothquant", "--alpha", "auto", flag, value)
    assert sq[key] == value
    assert key not in _recipe("--method", "smoothquant", "--alpha", "auto")[0]
    with pytest.raises(Exception, match=f"{flag} {value} needs --alpha auto"):
        _recipe("--method", "smoothquant", "--alpha", "0.5", flag, value)


def test_smoothquant_then_weight_only_keeps_the_simulated_act_mode() -> None:
    sq, g = _recipe("--method", "smoothquant", "--alpha", "auto", "--act-granularity", "tensor", "--then", "gptq",
                    "--bits", "8")
    assert sq["act"] == "static" and g["step"] == "gptq" and g["bits"] == 8


@pytest.mark.parametrize("method", [[], ["--method", "smoothquant", "--alpha", "auto", "--then"]])
@pytest.mark.parametrize("act, observer", [([], None), (["--act-granularity", "tensor", "--act-observer", "mse"], "mse")])
def test_gptq_w8_then_int8_activations(method: list[str], act: list[str], observer: str | None) -> None:
    steps = _recipe(*(method or ["--method"]), "gptq", "--bits", "8", "--symmetric", "--act-order", "--act-bits", "8",
                    *act)
    g, w = steps[-2:]
    assert [s["step"] for s in steps] == (["smoothquant"] if method else []) + ["gptq", "w8a8"]
    assert g["bits"] == 8 and g["symmetric"] and g["granularity"] == "channel" and g["act_order"]
    assert w["act"] == ("static" if act else "per-token") and w.get("act_observer", "minmax") == (observer or "minmax")
    if method:
        assert steps[0]["act"] == w["act"]  # --alpha auto simulates the activations that will run


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "rtn", "--act-bits", "8"], "cannot honour --bits 4; "),
        (["--method", "rtn", "--bits", "8", "--act-bits", "8", "--group-size", "32"],
         "cannot honour --granularity group --group-size 32; "),
        (["--method", "rtn", "--bits", "8", "--act-bits", "8", "--granularity", "tensor", "--observer", "mse"],
         "cannot honour --granularity tensor, --observer mse; "),
        (["--method", "rtn", "--bits", "8", "--act-bits", "4"], "--act-bits must be 8"),
        (["--method", "rtn", "--bits", "8", "--act-granularity", "tensor"], "only apply with --act-bits 8"),
        (["--method", "gptq", "--bits", "8", "--act-bits", "8"],
         "--act-bits 8 with --method gptq runs int8 x int8 layers: they need GPTQ on int8 symmetric per-channel "
         "weights, --bits 8 --symmetric --granularity channel (got --bits 8 --granularity channel)"),
        (["--method", "gptq", "--bits", "4", "--symmetric", "--act-bits", "8"], "(got --bits 4 --symmetric"),
        (["--method", "gptq", "--bits", "8", "--symmetric", "--act-granularity", "tensor"],
         "--act-granularity with --method gptq: int8 activations after GPTQ W8 need --act-bits 8"),
        (["--method", "llm-int8", "--act-bits", "8"], "LLM.int8() quantizes activations itself"),
        (["--method", "smoothquant", "--then", "rtn", "--bits", "8", "--act-bits", "8"], "quantizes weights only"),
        (["--method", "smoothquant", "--then", "gptq", "--act-observer", "mse"],
         "--act-observer with --method smoothquant --then gptq: int8 activations after GPTQ W8 need --act-bits 8"),
        (["--method", "smoothquant", "--then", "gptq", "--bits", "8", "--act-bits", "8", "--group-size", "64"],
         "(got --bits 8 --granularity group)"),
        (["--method", "rtn", "--bits", "8", "--act-bits", "8", "--format", "gptq"], "not --method rtn --act-bits 8"),
    ],
)
def test_mistakes_exit_2_with_one_line(argv: list[str], message: str, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["quantize", "unused-model", *argv, "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_help_shows_the_activation_flags(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["quantize", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(f in out for f in ("--act-bits", "--act-granularity {token,tensor}", "--act-observer")), out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n\n".join(f"Line {i}. " + " ".join(f"w{(i * 5 + j) % 89}" for j in range(100)) for i in range(20)))
    return path


def test_rtn_w8a8_static_checkpoint(tiny_model_dir, corpus, tmp_path, capsys, one_thread) -> None:
    from ptq.checkpoint import load_quantized
    from ptq.modules.w8a8_linear import W8A8Linear

    out = tmp_path / "w8a8"
    code = main(["quantize", str(tiny_model_dir), "--method", "rtn", "--bits", "8", "--act-bits", "8",
                 "--act-granularity", "tensor", "--calib", str(corpus), "--nsamples", "4", "--seqlen", "32",
                 "--output", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "ptq.json").read_text())
    assert [s["step"] for s in report["recipe"]] == ["w8a8"] and report["recipe"][0]["act"] == "static"
    model, _ = load_quantized(out)
    qmodules = [m for m in model.modules() if isinstance(m, W8A8Linear)]
    assert len(qmodules) == 2 * 7
    for m in qmodules:
        assert m.act == "static" and float(m.act_scale) > 0 and torch.isfinite(m.act_scale)
    with torch.no_grad():
        logits = model(torch.arange(8)[None]).logits
    assert torch.isfinite(logits).all()


def test_smoothquant_gptq_w8a8_checkpoint(tiny_model_dir, corpus, tmp_path, capsys, one_thread) -> None:
    from ptq.checkpoint import load_quantized
    from ptq.modules.w8a8_linear import W8A8Linear

    out = tmp_path / "sq-gptq"
    code = main(["quantize", str(tiny_model_dir), "--method", "smoothquant", "--then", "gptq", "--bits", "8",
                 "--symmetric", "--act-order", "--act-bits", "8", "--calib", str(corpus), "--nsamples", "4",
                 "--seqlen", "32", "--output", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "ptq.json").read_text())
    assert [s["step"] for s in report["recipe"]] == ["smoothquant", "gptq", "w8a8"]
    layer = report["layers"]["model.layers.0.mlp.up_proj"]
    assert layer["method"] == "w8a8" and layer["weight_grid"] == "gptq" and "smoothquant" in layer
    model, _ = load_quantized(out)
    qmodules = [m for m in model.modules() if isinstance(m, W8A8Linear)]
    assert len(qmodules) == 2 * 7 and all(m.act == "per-token" for m in qmodules)
    with torch.no_grad():
        assert torch.isfinite(model(torch.arange(8)[None]).logits).all()


def test_the_old_act_alias_is_gone() -> None:
    with pytest.raises(SystemExit):
        _recipe("--method", "smoothquant", "--act", "static")
