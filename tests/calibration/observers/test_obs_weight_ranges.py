"""calibration.recipes.weight_ranges.weight_qparams with every observer."""
import pytest
import torch

from calibration.observers import OBSERVERS
from calibration.recipes.weight_ranges import weight_qparams
from ptq import QuantSpec, fake_quantize


@pytest.mark.parametrize("name", sorted(OBSERVERS))
@pytest.mark.parametrize("spec,shape", [
    (QuantSpec(bits=4), (64, 1)),
    (QuantSpec(bits=4, granularity="group", group_size=32), (64, 4)),
    (QuantSpec(bits=3, symmetric=True, granularity="group", group_size=32), (64, 4)),
])
def test_weight_qparams_with_each_observer(name, spec, shape):
    torch.manual_seed(0)
    W = torch.randn(64, 128)
    scale, zero = weight_qparams(W, spec, name, {"percentile": 99.0} if name == "percentile" else None)
    assert scale.shape == zero.shape == shape
    assert torch.isfinite(scale).all() and torch.isfinite(zero).all() and (scale > 0).all()
    assert ((zero >= 0) & (zero <= spec.maxq)).all()
    err = float((fake_quantize(W, spec, scale, zero) - W).pow(2).mean())
    assert err < 0.1 * float(W.pow(2).mean())


def test_unknown_observer_argument_is_named():
    with pytest.raises(ValueError, match="'percentil'"):
        weight_qparams(torch.randn(8, 16), QuantSpec(bits=4), "percentile", {"percentil": 99.0})
