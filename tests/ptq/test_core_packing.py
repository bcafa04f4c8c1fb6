"""Bit packing: round trip, the GPTQ little-endian bit-stream layout, bad inputs."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ptq import QuantSpec, minmax_qparams, pack_codes, packed_length, quantize, unpack_codes

BITS = (2, 3, 4, 8)


def reference_pack(codes: list[int], bits: int) -> list[int]:
    """Little-endian bit stream: code i at bits [bits*i, bits*(i+1)), word j = stream bits [32j, 32j+32)."""
    stream = 0
    for i, c in enumerate(codes):
        stream |= c << (bits * i)
    words = -(-len(codes) * bits // 32)
    out = []
    for j in range(words):
        w = (stream >> (32 * j)) & 0xFFFFFFFF
        out.append(w - (1 << 32) if w >= 1 << 31 else w)  # as signed int32
    return out


def gptq_reference_pack_3bit(codes: list[int]) -> list[int]:
    """Hand transcription of the 3-bit branch of GPTQ's ``QuantLinear.pack`` for 32 codes -> 3 words."""
    assert len(codes) == 32
    w = [0, 0, 0]
    i = 0
    for j in range(i, i + 10):
        w[0] |= codes[j] << (3 * (j - i))
    i += 10
    w[0] |= codes[i] << 30
    w[1] |= (codes[i] >> 2) & 1
    i += 1
    for j in range(i, i + 10):
        w[1] |= codes[j] << (3 * (j - i) + 1)
    i += 10
    w[1] |= codes[i] << 31
    w[2] |= (codes[i] >> 1) & 0x3
    i += 1
    for j in range(i, i + 10):
        w[2] |= codes[j] << (3 * (j - i) + 2)
    return [(x & 0xFFFFFFFF) - (1 << 32) if x & 0xFFFFFFFF >= 1 << 31 else x & 0xFFFFFFFF for x in w]


def random_codes(shape, bits, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1 << bits, shape, generator=g, dtype=torch.int64).to(torch.uint8)


@given(bits=st.sampled_from(BITS), n=st.integers(0, 200), lead=st.sampled_from([(), (1,), (3,), (2, 3)]),
       seed=st.integers(0, 2**31 - 1))
@settings(max_examples=100, deadline=None)
def test_pack_unpack_round_trip_bit_exact(bits, n, lead, seed):
    codes = random_codes((*lead, n), bits, seed)
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.int32
    assert packed.shape == (*lead, packed_length(n, bits))
    out = unpack_codes(packed, bits, n)
    assert out.dtype == torch.uint8
    assert torch.equal(out, codes)


@given(bits=st.sampled_from(BITS), n=st.integers(0, 130), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=100, deadline=None)
def test_layout_matches_little_endian_bitstream_reference(bits, n, seed):
    codes = random_codes((n,), bits, seed)
    assert pack_codes(codes, bits).tolist() == reference_pack(codes.tolist(), bits)


@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4))
@settings(max_examples=50, deadline=None)
def test_3bit_packs_32_codes_into_3_words_like_gptq(seed, rows):
    codes = random_codes((rows, 32), 3, seed)
    packed = pack_codes(codes, 3)
    assert packed.shape == (rows, 3)
    for r in range(rows):
        assert packed[r].tolist() == gptq_reference_pack_3bit(codes[r].tolist())


def test_3bit_straddling_codes_10_and_21():
    codes = torch.zeros(32, dtype=torch.uint8)
    codes[10] = 0b101  # bits 30, 31 of word 0 and bit 0 of word 1
    codes[21] = 0b011  # bit 31 of word 1 and bits 0, 1 of word 2
    w = pack_codes(codes, 3).tolist()
    assert w == [1 << 30, 1 - (1 << 31), 0b01]  # signed int32 values
    assert w[0] & 0xFFFFFFFF == 0b01 << 30
    assert w[1] & 0xFFFFFFFF == (1 << 31) | 0b1
    assert w[2] & 0xFFFFFFFF == 0b01


@pytest.mark.parametrize("bits, per_word", [(2, 16), (4, 8), (8, 4)])
def test_whole_codes_per_word(bits, per_word):
    codes = torch.arange(per_word, dtype=torch.int64) % (1 << bits)
    (word,) = pack_codes(codes, bits).tolist()
    expected = sum(int(c) << (bits * i) for i, c in enumerate(codes))
    assert word & 0xFFFFFFFF == expected


@pytest.mark.parametrize("bits", BITS)
def test_all_ones_codes_give_minus_one_words(bits):
    n = 32 * 3  # a whole number of words for every width
    codes = torch.full((n,), (1 << bits) - 1, dtype=torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.tolist() == [-1] * packed_length(n, bits)
    assert torch.equal(unpack_codes(packed, bits, n), codes)


@pytest.mark.parametrize("bits", BITS)
def test_padding_bits_are_zero(bits):
    n = 33
    codes = torch.full((n,), (1 << bits) - 1, dtype=torch.uint8)
    last = pack_codes(codes, bits)[-1].item() & 0xFFFFFFFF
    used = n * bits - 32 * (packed_length(n, bits) - 1)
    assert last == (1 << used) - 1


@pytest.mark.parametrize("n, bits, words", [(0, 3, 0), (1, 3, 1), (32, 3, 3), (33, 3, 4), (11, 3, 2),
                                             (16, 2, 1), (17, 2, 2), (8, 4, 1), (4, 8, 1), (5, 8, 2)])
def test_packed_length(n, bits, words):
    assert packed_length(n, bits) == words


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_integer_code_dtypes_accepted(dtype):
    codes = torch.tensor([0, 1, 2, 3, 3, 0], dtype=dtype)
    assert unpack_codes(pack_codes(codes, 2), 2, 6).tolist() == codes.tolist()


@pytest.mark.parametrize("bits", BITS)
def test_zero_sized_inputs(bits):
    assert pack_codes(torch.zeros(0, dtype=torch.uint8), bits).shape == (0,)
    assert pack_codes(torch.zeros(4, 0, dtype=torch.uint8), bits).shape == (4, 0)
    assert pack_codes(torch.zeros(0, 40, dtype=torch.uint8), bits).shape == (0, packed_length(40, bits))
    assert unpack_codes(torch.zeros(0, dtype=torch.int32), bits, 0).shape == (0,)
    assert unpack_codes(torch.zeros(0, packed_length(40, bits), dtype=torch.int32), bits, 40).shape == (0, 40)


@pytest.mark.parametrize("bits", [3, 4, 8, 2])
def test_quantized_codes_pack_round_trip(bits):
    spec = QuantSpec(bits=bits, granularity="group", group_size=16)
    x = torch.randn(5, 48, generator=torch.Generator().manual_seed(bits))
    q = quantize(x, *minmax_qparams(x, spec), spec)
    assert torch.equal(unpack_codes(pack_codes(q, bits), bits, 48), q)


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("bits", [1, 5, 6, 7, 16])
def test_unsupported_bits_rejected(bits):
    with pytest.raises(ValueError, match=r"packing supports \(2, 3, 4, 8\) bits, got " + str(bits)):
        pack_codes(torch.zeros(8, dtype=torch.uint8), bits)
    with pytest.raises(ValueError, match="packing supports"):
        unpack_codes(torch.zeros(1, dtype=torch.int32), bits, 8)
    with pytest.raises(ValueError, match="packing supports"):
        packed_length(8, bits)


@pytest.mark.parametrize("bits", BITS)
def test_codes_out_of_range_rejected(bits):
    maxq = (1 << bits) - 1
    with pytest.raises(ValueError, match=rf"codes must lie in \[0, {maxq}\] for {bits}-bit packing"):
        pack_codes(torch.tensor([0, maxq + 1], dtype=torch.int64), bits)
    with pytest.raises(ValueError, match=rf"codes must lie in \[0, {maxq}\]"):
        pack_codes(torch.tensor([-1, 0], dtype=torch.int32), bits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bool])
def test_non_integer_codes_rejected(dtype):
    with pytest.raises(ValueError, match=r"codes must be an integer tensor, got torch\."):
        pack_codes(torch.zeros(8, dtype=dtype), 4)


@pytest.mark.parametrize("bits, n, words", [(3, 32, 2), (3, 32, 4), (4, 9, 1), (2, 0, 1), (8, 5, 1)])
def test_unpack_wrong_length_rejected(bits, n, words):
    with pytest.raises(ValueError, match=rf"{words} words cannot hold exactly {n} codes of {bits} bits"):
        unpack_codes(torch.zeros(words, dtype=torch.int32), bits, n)


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.float32])
def test_unpack_non_int32_rejected(dtype):
    with pytest.raises(ValueError, match=r"packed words must be int32, got torch\."):
        unpack_codes(torch.zeros(3, dtype=dtype), 3, 32)
