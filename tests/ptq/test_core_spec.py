"""QuantSpec: validation messages, maxq, check_shape, to_dict/from_dict, describe, frozen."""
from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptq import QuantSpec


def specs() -> st.SearchStrategy[QuantSpec]:
    bits = st.integers(2, 8)
    plain = st.builds(QuantSpec, bits=bits, symmetric=st.booleans(),
                      granularity=st.sampled_from(["tensor", "channel"]), include_zero=st.booleans())
    grouped = st.builds(QuantSpec, bits=bits, symmetric=st.booleans(), granularity=st.just("group"),
                        group_size=st.integers(1, 512), include_zero=st.booleans())
    return plain | grouped


def test_defaults_are_4bit_asymmetric_per_channel_with_zero():
    s = QuantSpec()
    assert (s.bits, s.symmetric, s.granularity, s.group_size, s.include_zero) == (4, False, "channel", None, True)
    assert s.maxq == 15


@pytest.mark.parametrize("bits", range(2, 9))
def test_maxq_is_2_pow_bits_minus_1(bits):
    assert QuantSpec(bits=bits).maxq == 2**bits - 1


@pytest.mark.parametrize("bits", [1, 9, 0, -4, 16])
def test_bits_outside_2_to_8_rejected_with_message(bits):
    with pytest.raises(ValueError, match=rf"bits must be from 2 to 8, got {bits}"):
        QuantSpec(bits=bits)


@pytest.mark.parametrize("bits", [4.0, "4", True, None])
def test_non_integer_bits_rejected_with_message(bits):
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
        QuantSpec(bits=bits)


def test_unknown_granularity_rejected_listing_the_choices():
    with pytest.raises(ValueError, match=r"granularity must be one of tensor, channel, group, got 'row'"):
        QuantSpec(granularity="row")


def test_group_granularity_without_group_size_rejected():
    with pytest.raises(ValueError, match=r"granularity 'group' needs a group_size"):
        QuantSpec(granularity="group")


@pytest.mark.parametrize("group_size", [0, -32, True, 64.0, "64"])
def test_bad_group_size_rejected(group_size):
    with pytest.raises(ValueError, match=r"group_size must be a positive integer"):
        QuantSpec(granularity="group", group_size=group_size)


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_group_size_without_group_granularity_rejected(granularity):
    with pytest.raises(ValueError, match=rf"group_size=64 was given with granularity '{granularity}'.*"
                                         r"use granularity 'group'"):
        QuantSpec(granularity=granularity, group_size=64)


def test_check_shape_names_dimension_and_lists_divisors():
    spec = QuantSpec(granularity="group", group_size=128)
    with pytest.raises(ValueError) as info:
        spec.check_shape(576)
    msg = str(info.value)
    assert "group_size 128 does not divide the input dimension (576)" in msg
    assert "group sizes that divide it: 8, 9, 12, 16, 18, 24, 32, 36, 48, 64" in msg
    with pytest.raises(ValueError, match=r"group_size 100 does not divide in_features of mlp.down_proj \(1536\)"):
        QuantSpec(granularity="group", group_size=100).check_shape(1536, name="in_features of mlp.down_proj")


@given(in_features=st.integers(1, 3000), group_size=st.integers(1, 512))
@settings(max_examples=80, deadline=None)
def test_check_shape_divisors_listed_really_divide(in_features, group_size):
    spec = QuantSpec(granularity="group", group_size=group_size)
    if in_features % group_size == 0:
        spec.check_shape(in_features)
        return
    with pytest.raises(ValueError) as info:
        spec.check_shape(in_features)
    hint = str(info.value).split("group sizes that divide it: ")[1]
    listed = [int(d) for d in hint.split(", ")]
    assert listed and all(in_features % d == 0 for d in listed)
    assert group_size not in listed


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_check_shape_is_noop_without_groups(granularity):
    QuantSpec(granularity=granularity).check_shape(577)


@given(specs())
@settings(max_examples=60, deadline=None)
def test_to_dict_from_dict_round_trip(spec):
    d = spec.to_dict()
    assert set(d) == {"bits", "symmetric", "granularity", "group_size", "include_zero", "scale_dtype"}
    assert QuantSpec.from_dict(d) == spec
    assert QuantSpec.from_dict(json.loads(json.dumps(d))) == spec  # survives a JSON config file
    assert hash(QuantSpec.from_dict(d)) == hash(spec)


def test_from_dict_validates():
    with pytest.raises(ValueError, match="bits must be from 2 to 8"):
        QuantSpec.from_dict({"bits": 9})
    with pytest.raises(TypeError):
        QuantSpec.from_dict({"bits": 4, "unknown_key": 1})


@pytest.mark.parametrize(
    "spec, label",
    [
        (QuantSpec(bits=4, granularity="group", group_size=64), "W4 g64"),
        (QuantSpec(bits=8, symmetric=True), "W8 per-channel sym"),
        (QuantSpec(bits=3, granularity="tensor"), "W3 per-tensor"),
        (QuantSpec(bits=2, symmetric=True, granularity="group", group_size=128), "W2 g128 sym"),
    ],
)
def test_describe(spec, label):
    assert spec.describe() == label


@pytest.mark.parametrize("field", ["bits", "symmetric", "granularity", "group_size", "include_zero"])
def test_spec_is_frozen(field):
    spec = QuantSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(spec, field, 8)
    assert spec == QuantSpec()
