"""``--method awq``: the recipes its flags build, its user errors, and a run written as a GPTQ checkpoint."""
import argparse
import json

import pytest

from scripts.cli import main
from scripts.commands import quantize
from scripts.errors import UsageError


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    quantize.add_arguments(p)
    return p.parse_args(["some-model", "--output", "unused-dir", *argv])


def test_awq_then_rtn_by_default_and_gptq_on_request() -> None:
    recipe = quantize.build_recipe(_args("--method", "awq", "--bits", "3", "--group-size", "64"))
    awq, w = recipe.to_list()
    assert awq == {"step": "awq"} and w["step"] == "rtn" and w["bits"] == 3 and w["group_size"] == 64
    assert recipe.steps[0].spec == recipe.steps[1].spec
    awq, g = quantize.build_recipe(_args("--method", "awq", "--then", "gptq", "--act-order", "--group-size", "64",
                                         "--awq-search-samples", "0", "--no-awq-clip")).to_list()
    assert awq == {"step": "awq", "search_samples": 0, "clip": False} and g["step"] == "gptq" and g["act_order"]
    sq, w8 = quantize.build_recipe(_args("--method", "smoothquant")).to_list()  # --then keeps its default there
    assert sq["step"] == "smoothquant" and w8["step"] == "w8a8"


@pytest.mark.parametrize("flags,msg", [
    (["--then", "w8a8"], "weight-only"),
    (["--act-bits", "8", "--bits", "8"], "weight-only"),
    (["--granularity", "tensor"], "per group"),
    (["--awq-search-samples", "-1"], "--awq-search-samples"),
])
def test_user_errors(flags, msg) -> None:
    with pytest.raises(UsageError, match=msg):
        quantize.build_recipe(_args("--method", "awq", *flags))


def test_awq_run_exports_gptq(tiny_model_dir, tmp_path, capsys) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog. " * 8
                                  for i in range(12)))
    out = tmp_path / "q"
    code = main([str(a) for a in ("quantize", tiny_model_dir, "--method", "awq", "--group-size", "32",
                                  "--format", "gptq", "--calib", corpus, "--nsamples", 4, "--seqlen", 32,
                                  "--output", out, "--quiet")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["quantization_config"]["quant_method"] == "gptq"
    report = json.loads((out / "ptq.json").read_text())
    assert report["steps"][0]["step"] == "awq" and report["steps"][0]["alphas"]
