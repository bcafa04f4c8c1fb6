"""``--method smoothquant`` / ``--method w8a8`` flags build the expected recipes (no model loaded)."""
import argparse

import pytest

from scripts.commands import quantize


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    quantize.add_arguments(p)
    return p.parse_args(["some-model", "--output", "unused-dir", *argv])


def test_smoothquant_auto_static() -> None:
    recipe = quantize.build_recipe(_args("--method", "smoothquant", "--alpha", "auto", "--act-granularity", "tensor",
                                         "--act-observer", "percentile"))
    sq, w = recipe.to_list()
    assert sq["step"] == "smoothquant" and sq["alpha"] == "auto" and sq["act"] == "static"
    assert w["step"] == "w8a8" and w["act"] == "static" and w["act_observer"] == "percentile"


def test_smoothquant_then_gptq_and_naive_w8a8() -> None:
    sq, g = quantize.build_recipe(_args("--method", "smoothquant", "--alpha", "0.7", "--then", "gptq",
                                        "--bits", "8")).to_list()
    assert sq["alpha"] == 0.7 and g["step"] == "gptq" and g["bits"] == 8
    (w,) = quantize.build_recipe(_args("--method", "w8a8")).to_list()
    assert w["step"] == "w8a8" and w["act"] == "per-token" and w["mode"] == "int"


@pytest.mark.parametrize("bad", ["1.5", "-1", "best"])
def test_bad_alpha(bad: str) -> None:
    """Refused by the step's own check (one validation for the CLI and recipes), named by its flag."""
    from scripts.errors import UsageError

    with pytest.raises(UsageError, match="--alpha .* must be a number from 0 to 1"):
        quantize.build_recipe(_args("--method", "smoothquant", "--alpha", bad))


def test_fast_path_flags() -> None:
    """``--statistics float-model`` (SmoothQuant) and ``--hessian-products bfloat16`` (GPTQ) reach their steps; at
    their defaults neither is written into the recipe (older results-store keys stay)."""
    sq, w = quantize.build_recipe(_args("--method", "smoothquant", "--alpha", "0.5", "--statistics",
                                        "float-model")).to_list()
    assert sq["statistics"] == "float-model" and w["step"] == "w8a8"
    (g,) = quantize.build_recipe(_args("--method", "gptq", "--hessian-products", "bfloat16")).to_list()
    assert g["hessian_products"] == "bfloat16"
    (sq0, _), (g0,) = (quantize.build_recipe(_args("--method", "smoothquant")).to_list(),
                       quantize.build_recipe(_args("--method", "gptq")).to_list())
    assert "statistics" not in sq0 and "hessian_products" not in g0
