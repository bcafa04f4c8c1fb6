"""merge() of two observers equals one observer that saw both streams."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from calibration.observers import make_observer
from ptq import QuantSpec

EXACT = ["minmax", "absmax-per-channel", "percentile", "mse"]
SMALL = {"percentile": {"bins": 64, "percentile": 99.0}, "mse": {"bins": 64, "grid": 20}}


@st.composite
def streams(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    nd = len(shape)
    axis = draw(st.one_of(st.none(), st.integers(-nd, nd - 1)))
    seed = draw(st.integers(0, 2**16))
    widen = draw(st.sampled_from([1.0, 1.0, 4.0]))  # second stream's bound: equal or 4x (power of two)
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g) * 2 - 1
    b = (torch.rand(shape, generator=g) * 2 - 1) * widen
    anchor = tuple(slice(None) if (axis is not None and d == axis % nd) else 0 for d in range(nd))
    a[anchor], b[anchor] = 1.0, widen  # every channel of a (b) reaches |x| = 1 (widen)
    return a, b, axis


def assert_same(one, merged, name):
    r1, r2 = one.range(), merged.range()
    assert torch.equal(r1[0], r2[0]) and torch.equal(r1[1], r2[1])
    assert int(one.count) == int(merged.count) and one.channels == merged.channels
    if hasattr(one, "hist"):
        assert torch.equal(one.hist.bound, merged.hist.bound)
        assert torch.equal(one.hist.counts, merged.hist.counts)
    if name == "mse":
        spec = QuantSpec(bits=3)
        assert all(torch.equal(p, q) for p, q in zip(one.qparams(spec), merged.qparams(spec)))


@pytest.mark.parametrize("name", EXACT)
@settings(max_examples=30, deadline=None)
@given(data=streams())
def test_merge_equals_single_stream(name, data):
    a, b, axis = data
    if name == "absmax-per-channel" and axis is None:
        axis = None  # per-tensor absmax is allowed too
    kw = SMALL.get(name, {})
    one = make_observer(name, axis=axis, **kw)
    one.update(a)
    one.update(b)
    left, right = make_observer(name, axis=axis, **kw), make_observer(name, axis=axis, **kw)
    left.update(a)
    right.update(b)
    assert left.merge(right) is left
    assert_same(one, left, name)


@pytest.mark.parametrize("name", EXACT + ["moving-average"])
def test_merge_with_empty_is_identity(name):
    x = torch.randn(4, 3, 8)
    obs = make_observer(name, axis=-1)
    obs.update(x)
    before = [t.clone() for t in obs.range()]
    obs.merge(make_observer(name, axis=-1))
    assert all(torch.equal(p, q) for p, q in zip(before, obs.range()))
    empty = make_observer(name, axis=-1)
    empty.merge(obs)
    assert all(torch.equal(p, q) for p, q in zip(before, empty.range()))
    obs.update(x)  # the copy is independent of the original
    assert int(empty.count) == 4 * 3


def test_histogram_merge_with_unrelated_bounds_is_within_bin_tolerance():
    torch.manual_seed(0)
    a, b = torch.randn(200_000), torch.randn(200_000) * 1.37
    one = make_observer("percentile", percentile=99.0, bins=2048)
    one.update(torch.cat([a, b]))
    left, right = make_observer("percentile", percentile=99.0, bins=2048), make_observer("percentile", percentile=99.0, bins=2048)
    left.update(a)
    right.update(b)
    left.merge(right)
    width = float(left.hist.bound) / 2048
    assert abs(float(left.threshold) - float(one.threshold)) < 2 * width
    assert float(left.hist.counts.sum()) == pytest.approx(400_000)


def test_moving_average_merge_is_count_weighted():
    a, b = make_observer("moving-average"), make_observer("moving-average")
    a.update(torch.tensor([-1.0, 1.0]))
    b.update(torch.tensor([-3.0, 0.0, 2.0, 5.0, 1.0, 1.0]))
    a.merge(b)
    lo, hi = a.range()
    assert float(lo) == pytest.approx((2 * -1 + 6 * -3) / 8) and float(hi) == pytest.approx((2 * 1 + 6 * 5) / 8)


@pytest.mark.parametrize("other,msg", [
    (lambda: make_observer("minmax", axis=0), "different axes"),
    (lambda: make_observer("percentile", axis=-1), "cannot merge a PercentileObserver"),
    (lambda: make_observer("minmax", axis=-1), "channels"),
])
def test_merge_mismatch_raises(other, msg):
    obs = make_observer("minmax", axis=-1)
    obs.update(torch.randn(2, 4))
    o = other()
    o.update(torch.randn(2, 5))
    with pytest.raises(ValueError, match=msg):
        obs.merge(o)


def test_merge_different_settings_raises():
    p, q = make_observer("percentile", percentile=99.0), make_observer("percentile", percentile=99.9)
    p.update(torch.randn(10))
    q.update(torch.randn(10))
    with pytest.raises(ValueError, match="different settings"):
        p.merge(q)
