"""The registry of qparams choosers: names, options, legacy booleans, steps and CLI spelling."""
from __future__ import annotations

import argparse
import warnings

import pytest
import torch

from ptq import QuantSpec
from ptq.choosers import choose_qparams, get_qparams, legacy_qparams, qparams_names, register_qparams
from ptq.choosers import registry as registry_module
from ptq.qparams import minmax_qparams, mse_qparams


def test_builtin_names_and_results():
    assert {"minmax", "mse", "mse-weighted"} <= set(qparams_names())
    W = torch.randn(8, 32)
    spec = QuantSpec(bits=3, granularity="group", group_size=16)
    for got, want in [(choose_qparams("minmax", W, spec), minmax_qparams(W, spec)),
                      (choose_qparams("mse", W, spec, grid=20), mse_qparams(W, spec, grid=20))]:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    c = torch.rand(32)
    torch.testing.assert_close(choose_qparams("mse-weighted", W, spec, importance=c),
                               mse_qparams(W, spec, column_weight=c), rtol=0, atol=0)
    torch.testing.assert_close(choose_qparams("mse-weighted", W, spec), mse_qparams(W, spec), rtol=0, atol=0)
    assert get_qparams("mse-weighted").uses_importance and not get_qparams("mse").uses_importance


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match="unknown qparams 'nope'; known: .*minmax"):
        get_qparams("nope")
    with pytest.raises(ValueError, match="qparams 'mse' has no option.* gridsize; its options: grid, maxshrink, norm"):
        choose_qparams("mse", torch.randn(2, 4), QuantSpec(), gridsize=3)


def test_register_a_new_chooser(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_qparams("half-range")
    def half(W, spec, importance=None, factor=0.5):
        xmin, xmax = W.amin(1, keepdim=True), W.amax(1, keepdim=True)
        from ptq.qparams import compute_qparams
        return compute_qparams(factor * xmin, factor * xmax, spec)

    assert "half-range" in qparams_names() and get_qparams("half-range").options == ("factor",)
    W = torch.randn(4, 8)
    scale, _ = choose_qparams("half-range", W, QuantSpec(), factor=0.25)
    torch.testing.assert_close(scale, minmax_qparams(0.25 * W, QuantSpec())[0])
    with pytest.raises(ValueError, match="already registered"):
        register_qparams("half-range")(lambda W, spec, importance=None: (W, W))
    with pytest.raises(TypeError, match="must take"):
        register_qparams("bad")(lambda W, spec: (W, W))


def test_legacy_booleans():
    assert legacy_qparams(False, False) is None
    assert legacy_qparams(True, False) == "mse" and legacy_qparams(True, True) == "mse-weighted"
    with pytest.raises(ValueError, match="mse_weighted weighs the mse grid search"):
        legacy_qparams(False, True)


def test_gptq_step_keeps_the_old_spelling_and_keys():
    from calibration.recipes import GPTQStep, RTNStep

    # the keys of the results store hash these dicts: the new options are absent at their defaults
    assert list(RTNStep().to_dict()) == ["step", "bits", "granularity", "group_size", "symmetric", "include_zero",
                                         "scale_dtype", "observer", "observer_args"]
    assert list(GPTQStep().to_dict()) == ["step", "bits", "granularity", "group_size", "symmetric", "include_zero",
                                          "scale_dtype", "blocksize", "damp", "act_order", "static_groups",
                                          "true_sequential", "mse", "hessian_dtype"]

    old = GPTQStep(bits=4, act_order=True, mse=True, mse_weighted=True)
    new = GPTQStep(bits=4, act_order=True, qparams="mse-weighted")
    assert old.to_dict() == new.to_dict() and new.to_dict()["mse"] and new.to_dict()["mse_weighted"]
    assert "qparams" not in new.to_dict() and "qparams" not in GPTQStep().to_dict()
    assert GPTQStep(qparams="mse").to_dict() == GPTQStep(mse=True).to_dict()
    assert GPTQStep(qparams="mse", qparams_args={"grid": 50}).to_dict()["qparams_args"] == {"grid": 50}
    with pytest.raises(ValueError, match="mse/mse_weighted ask for qparams 'mse'"):
        GPTQStep(mse=True, qparams="minmax-nope")
    with pytest.raises(ValueError, match="unknown qparams"):
        GPTQStep(qparams="nope")
    assert "qparams" not in RTNStep().to_dict() and RTNStep(qparams="mse").to_dict()["qparams"] == "mse"
    with pytest.raises(ValueError, match="RTN does not collect"):
        RTNStep(qparams="mse-weighted")
    with pytest.raises(ValueError, match="not both"):
        RTNStep(qparams="mse", observer="percentile")


def test_gptq_function_deprecated_booleans_equal_the_name():
    from ptq.algorithms import gptq

    torch.manual_seed(0)
    X = torch.randn(256, 32)
    W, H = torch.randn(8, 32), 2 * X.t() @ X / 256
    spec = QuantSpec(bits=3, granularity="group", group_size=16)
    with pytest.warns(DeprecationWarning, match="qparams='mse-weighted'"):
        old = gptq(W, H, spec, mse=True, mse_weighted=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = gptq(W, H, spec, qparams="mse-weighted")
    torch.testing.assert_close(old.weight, new.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="has no option"):
        gptq(W, H, spec, qparams="mse", qparams_args={"nope": 1})
    with pytest.raises(ValueError, match="format 'nf4' is not supported"):
        gptq(W, H, QuantSpec(format="nf4", group_size=16))


def _args(*argv: str) -> argparse.Namespace:
    from scripts.commands.quantize import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["m", "--output", "o", *argv])


def test_cli_qparams_and_deprecated_aliases():
    from scripts.commands.quantize import build_recipe
    from scripts.errors import UsageError

    (step,) = build_recipe(_args("--method", "gptq", "--qparams", "mse-weighted")).steps
    assert step.qparams == "mse-weighted" and step.mse and step.mse_weighted
    with pytest.warns(DeprecationWarning, match="--mse-weighted is deprecated.*--qparams mse-weighted"):
        (old,) = build_recipe(_args("--method", "gptq", "--mse-weighted")).steps
    assert old.to_dict() == step.to_dict()
    with pytest.warns(DeprecationWarning):
        with pytest.raises(UsageError, match="contradicts --qparams minmax"):
            build_recipe(_args("--method", "gptq", "--mse", "--qparams", "minmax"))
    (rtn,) = build_recipe(_args("--method", "rtn", "--qparams", "mse")).steps
    assert rtn.qparams == "mse"
    with pytest.raises(UsageError, match="both choose the weight range"):
        build_recipe(_args("--method", "rtn", "--qparams", "mse", "--observer", "percentile"))
    with pytest.raises(ValueError, match="RTN does not collect"):
        build_recipe(_args("--method", "rtn", "--qparams", "mse-weighted"))
