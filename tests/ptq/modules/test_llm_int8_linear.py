"""Int8OutlierLinear: modes, baselines, paths agree, bad inputs, swap registry round trip."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from ptq.modules.llm_int8_linear import Int8OutlierLinear
from ptq.modules.swap import qmodule_entry


@pytest.fixture
def layer_and_input():
    torch.manual_seed(0)
    layer = nn.Linear(64, 48)
    x = torch.randn(2, 24, 64)
    x[..., [3, 50]] *= 25
    return layer, x


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("zero_point", [False, True])
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int_and_fake_paths_agree(layer_and_input, mode, zero_point):
    layer, x = layer_and_input
    idx = torch.tensor([3, 50]) if mode == "static" else None
    a = Int8OutlierLinear.from_float(layer, mode=mode, compute="int", outlier_idx=idx, zero_point=zero_point)
    b = Int8OutlierLinear.from_float(layer, mode=mode, compute="fake", outlier_idx=idx, zero_point=zero_point)
    torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-4)
    assert a(x).shape == (2, 24, 48)


def test_error_ordering_of_the_papers_baselines(layer_and_input):
    layer, x = layer_and_input
    ref = layer(x)
    with torch.no_grad():
        dyn = rel(Int8OutlierLinear.from_float(layer)(x), ref)
        static = rel(Int8OutlierLinear.from_float(layer, mode="static", outlier_idx=torch.tensor([3, 50]))(x), ref)
        vector = rel(Int8OutlierLinear.from_float(layer, threshold=math.inf)(x), ref)
        tensor = rel(Int8OutlierLinear.from_float(layer, threshold=math.inf, granularity="tensor")(x), ref)
    assert max(dyn, static) < vector < tensor
    assert static < 0.01 and dyn < 0.01


def test_zero_point_beats_absmax_on_skewed_rows(layer_and_input):
    layer, x = layer_and_input
    x = x.abs() + 0.5  # every row positive (as after a ReLU / GELU): absmax wastes the negative codes
    with torch.no_grad():
        layer.weight.add_(0.2)  # weight rows skewed too
    ref = layer(x)
    with torch.no_grad():
        absmax = rel(Int8OutlierLinear.from_float(layer)(x), ref)
        zp = Int8OutlierLinear.from_float(layer, zero_point=True)
        zero_point = rel(zp(x), ref)
    assert zero_point < 0.6 * absmax
    assert zp.weight_zero.dtype == torch.int32 and zp.quant_config()["zero_point"] is True
    assert Int8OutlierLinear.from_float(layer).weight_zero is None  # absmax layers carry no zero points


def test_all_columns_outliers_fall_back_to_float_with_one_warning(layer_and_input):
    layer, _ = layer_and_input
    m = Int8OutlierLinear.from_float(layer, threshold=0.001)
    x = torch.full((4, 64), 5.0)
    with pytest.warns(RuntimeWarning, match="every input column is an outlier"):
        y = m(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(x)  # no second warning
    torch.testing.assert_close(y, x @ m.dequantized_weight().t() + layer.bias.detach())


def test_float16_input_is_computed_in_float32_and_returned_in_float16(layer_and_input):
    layer, x = layer_and_input
    m = Int8OutlierLinear.from_float(layer)
    y16 = m(x.half())
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16.float(), m(x.half().float()), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 0.0}, "threshold must be positive"),
    ({"threshold": -6.0}, "threshold must be positive"),
    ({"mode": "sometimes"}, "mode must be one of dynamic, static"),
    ({"mode": "static"}, "static mode needs the outlier columns"),
    ({"zero_point": True, "granularity": "tensor"}, "needs granularity 'vector'"),
])
def test_bad_arguments(layer_and_input, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Int8OutlierLinear.from_float(layer_and_input[0], **kwargs)


@pytest.mark.parametrize("zero_point", [False, True])
def test_registry_config_round_trip_and_to_float(layer_and_input, zero_point):
    layer, x = layer_and_input
    m = Int8OutlierLinear.from_float(layer, mode="static", outlier_idx=torch.tensor([3, 50]), zero_point=zero_point)
    entry = qmodule_entry("llm-int8")
    assert entry.cls is Int8OutlierLinear
    skeleton = entry.cls.from_config(layer, m.quant_config())
    assert skeleton.weight_q.is_meta and skeleton.float_columns == 2
    skeleton.load_state_dict(m.state_dict(), assign=True)
    torch.testing.assert_close(skeleton(x), m(x))
    back = m.to_float()
    assert isinstance(back, nn.Linear)
    torch.testing.assert_close(back(x), x @ m.dequantized_weight().t() + layer.bias, rtol=1e-5, atol=1e-5)
    assert m.footprint_bytes() < 4 * layer.weight.numel() / 2
