"""Observer inputs and errors: dtypes, NaN/inf, names, keyword arguments, empty observers, axes."""
import pytest
import torch

from calibration.observers import OBSERVERS, Observer, make_observer, register_observer
from ptq import QuantSpec

NAMES = sorted(OBSERVERS)


def test_registry_holds_the_documented_names():
    assert set(NAMES) >= {"minmax", "moving-average", "percentile", "mse", "absmax-per-channel"}
    assert all(issubclass(cls, Observer) and cls.name == name for name, cls in OBSERVERS.items())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("axis", [None, -1])
def test_half_precision_gives_the_stats_of_its_float32_values(name, dtype, axis):
    torch.manual_seed(0)
    x = (torch.randn(2, 16, 8) * 3).to(dtype)
    low, ref = make_observer(name, axis=axis), make_observer(name, axis=axis)
    low.update(x)
    ref.update(x.float())
    for p, q in zip(low.range(), ref.range()):
        assert p.dtype == torch.float32 and torch.equal(p, q)
    spec = QuantSpec(bits=4)
    assert all(torch.equal(p, q) for p, q in zip(low.qparams(spec), ref.qparams(spec)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad,word", [(float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "inf")])
def test_nan_or_inf_raises(name, bad, word):
    obs = make_observer(name, axis=-1)
    x = torch.randn(3, 4)
    x[1, 2] = bad
    with pytest.raises(ValueError, match=word):
        obs.update(x)
    with pytest.raises(ValueError, match="no data"):  # nothing was accumulated
        obs.range()


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown observer 'nope'; known: .*minmax.*percentile"):
        make_observer("nope")


def test_unknown_keyword_is_named():
    with pytest.raises(ValueError, match="observer 'percentile' got unknown argument.*'pct'.*accepts: axis, percentile, bins"):
        make_observer("percentile", pct=99.0)
    with pytest.raises(ValueError, match="'momentum'"):
        make_observer("minmax", momentum=0.1)


@pytest.mark.parametrize("name,kw,msg", [
    ("percentile", {"percentile": 0}, "percentile"), ("percentile", {"percentile": 101}, "percentile"),
    ("percentile", {"bins": 100}, "power of two"), ("mse", {"grid": 0}, "grid"),
    ("mse", {"maxshrink": 1.5}, "maxshrink"), ("mse", {"norm": -1}, "norm"),
    ("moving-average", {"momentum": 0}, "momentum"), ("minmax", {"axis": 1.5}, "axis"),
])
def test_bad_values_raise(name, kw, msg):
    with pytest.raises(ValueError, match=msg):
        make_observer(name, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_empty_observer(name):
    obs = make_observer(name)
    obs.update(torch.empty(0, 4))  # an empty tensor is ignored
    with pytest.raises(ValueError, match="observer has seen no data"):
        obs.range()
    with pytest.raises(ValueError, match="observer has seen no data"):
        obs.qparams(QuantSpec(bits=4))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_reset_and_axis_errors(name):
    obs = make_observer(name, axis=1)
    obs.update(torch.randn(2, 5, 3))
    lo, hi = obs.range()
    assert lo.shape == hi.shape == (5,) and (lo <= hi).all()
    scale, zero = obs.qparams(QuantSpec(bits=8))
    assert scale.shape == zero.shape == (5, 1)
    with pytest.raises(ValueError, match="expected 5 channels"):
        obs.update(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="out of range"):
        obs.update(torch.randn(5))
    obs.reset()
    with pytest.raises(ValueError, match="no data"):
        obs.range()
    per_tensor = make_observer(name, axis=None)
    per_tensor.update(torch.tensor(2.5))
    assert per_tensor.range()[0].shape == () and per_tensor.qparams(QuantSpec(bits=8))[0].shape == (1, 1)


def test_register_observer_rejects_a_second_class_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        @register_observer("minmax")
        class Other(Observer):
            pass


def test_absmax_default_axis_is_last():
    obs = make_observer("absmax-per-channel")
    x = torch.randn(2, 7, 6)
    obs.update(x)
    torch.testing.assert_close(obs.absmax, x.abs().amax(dim=(0, 1)), rtol=0, atol=0)
    lo, hi = obs.range()
    assert torch.equal(lo, -obs.absmax) and torch.equal(hi, obs.absmax)
