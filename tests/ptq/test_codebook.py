"""NF4 / FP4 with double quantization: the published algorithm spelled out, and bitsandbytes itself."""
from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch

from ptq import QuantSpec
from ptq.algorithms import rtn
from ptq.codebook import (absmax_quantize, code_values, codebook_dequantize, double_dequantize, double_quantize,
                          dynamic_map, pack_nibbles, unpack_nibbles, used_absmax)

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None


def test_code_books_as_published():
    nf4 = code_values("nf4")
    assert nf4.shape == (16,) and float(nf4[0]) == -1 and float(nf4[7]) == 0 and float(nf4[15]) == 1
    assert bool((nf4[1:] > nf4[:-1]).all())  # sorted: code i is the i-th quantile
    fp4 = code_values("fp4") * 12  # e2m1, bias 2: sign bit 3; 0b001 subnormal 0.0625
    assert fp4.tolist() == [0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3]
    dm = dynamic_map()
    assert dm.shape == (256,) and float(dm.max()) == 1 and float(dm.min()) > -1 and bool((dm[1:] >= dm[:-1]).all())


def slow_nf4(W: torch.Tensor, block: int) -> torch.Tensor:
    """Each block: absmax, then every value to the nearest code-book entry (ties to the lower value)."""
    values = sorted(code_values("nf4").tolist())
    out = torch.empty_like(W)
    flat, res = W.reshape(-1), out.reshape(-1)
    for b0 in range(0, flat.numel(), block):
        a = float(flat[b0:b0 + block].abs().max())
        for i in range(b0, b0 + block):
            x = max(-1.0, min(1.0, float(flat[i] * (1.0 / torch.tensor(a)))))
            best = min(range(16), key=lambda k: (abs(values[k] - x), k))
            res[i] = torch.tensor(values[best]) * torch.tensor(a)
    return out


def test_nf4_round_trip_matches_the_spelled_out_rules():
    torch.manual_seed(0)
    W = torch.randn(4, 128) * 0.03
    spec = QuantSpec(format="nf4", group_size=64)
    res = rtn(W, spec)
    torch.testing.assert_close(res.weight, slow_nf4(W, 64), rtol=0, atol=0)
    assert res.scale.shape == (4, 2) and torch.equal(res.scale, W.reshape(4, 2, 64).abs().amax(-1))
    codes, _ = absmax_quantize(W, spec)
    assert torch.equal(unpack_nibbles(pack_nibbles(codes)), codes)
    assert pack_nibbles(torch.tensor([[1, 2]])).item() == 0x12  # first code in the high nibble


def test_double_quant_rules():
    torch.manual_seed(1)
    absmax = torch.rand(3, 200) * 0.1 + 0.01  # 600 constants: blocks of 256, 256 and 88
    q2, absmax2, offset = double_quantize(absmax)
    torch.testing.assert_close(offset, absmax.mean().reshape(1))
    c = (absmax - offset).reshape(-1)
    assert absmax2.shape == (3,) and float(absmax2[2]) == float(c[512:].abs().max())
    back = double_dequantize(q2, absmax2, offset)
    assert float((back - absmax).abs().max()) < 0.01 * float(absmax.max())
    spec = QuantSpec(format="nf4", double_quant=True)
    torch.testing.assert_close(used_absmax(absmax, spec), back, rtol=0, atol=0)


@pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")
@pytest.mark.parametrize("fmt", ["nf4", "fp4"])
@pytest.mark.parametrize("shape", [(96, 256), (7, 192)])
def test_against_bitsandbytes(fmt, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes.functional as F
    assert torch.equal(dynamic_map(), F.create_dynamic_map())
    assert torch.equal(code_values(fmt), F.get_4bit_type(fmt, device="cpu"))
    torch.manual_seed(0)
    W = torch.randn(*shape) * 0.02
    W[:, 5] *= 20
    spec = QuantSpec(format=fmt, group_size=64)
    codes, absmax = absmax_quantize(W, spec)
    packed, state = F.quantize_4bit(W, blocksize=64, quant_type=fmt)
    assert torch.equal(pack_nibbles(codes).reshape(-1), packed.reshape(-1))
    assert torch.equal(absmax.reshape(-1), state.absmax)
    assert torch.equal(rtn(W, spec).weight, F.dequantize_4bit(packed, state))
    packed, state = F.quantize_4bit(W, blocksize=64, quant_type=fmt, compress_statistics=True)
    assert torch.equal(pack_nibbles(codes).reshape(-1), packed.reshape(-1))  # codes use the exact absmax
    q2, absmax2, offset = double_quantize(absmax)
    assert torch.equal(absmax2, state.state2.absmax) and torch.equal(offset, state.offset.reshape(1))
    # bitsandbytes' CPU kernel for the 8-bit step searches the dynamic map approximately: where its code
    # differs, ours is the nearest value (the rule of its reference backend), and that is rare.
    dm = dynamic_map()
    x = ((absmax.reshape(-1) - offset) / absmax2.repeat_interleave(256)[: absmax.numel()]).clamp(-1, 1)
    ours, theirs = q2.reshape(-1).long(), state.absmax.long()
    assert bool(((dm[ours] - x).abs() <= (dm[theirs] - x).abs()).all())
    assert int((ours != theirs).sum()) <= max(2, absmax.numel() // 50)
    same = (ours == theirs).reshape(absmax.shape).repeat_interleave(64, dim=1)
    dq = rtn(W, QuantSpec(format=fmt, group_size=64, double_quant=True)).weight
    assert torch.equal(dq[same], F.dequantize_4bit(packed, state)[same])


def test_spec_rules():
    s = QuantSpec(format="nf4", group_size=64, double_quant=True)
    assert (s.granularity, s.group_size, s.describe()) == ("group", 64, "NF4 g64 DQ")
    assert QuantSpec(format="fp4").group_size == 64
    assert QuantSpec.from_dict(s.to_dict()) == s and "format" not in QuantSpec().to_dict()
    with pytest.raises(ValueError, match="use bits=4"):
        QuantSpec(format="nf4", bits=3)
    with pytest.raises(ValueError, match="needs format='nf4' or 'fp4'"):
        QuantSpec(double_quant=True)
    with pytest.raises(ValueError, match="per-tensor"):
        QuantSpec(format="nf4", granularity="tensor")
    with pytest.raises(ValueError, match="format must be one of"):
        QuantSpec(format="nf5")


def test_nf4_fits_normal_weights_better_than_fp4():
    torch.manual_seed(0)
    W = torch.randn(64, 512)
    nf4 = rtn(W, QuantSpec(format="nf4", double_quant=True)).loss
    fp4 = rtn(W, QuantSpec(format="fp4", double_quant=True)).loss
    assert nf4 < fp4  # NF4's values are the quantiles of N(0, 1) (QLoRA Sec. 3)
    codes = codebook_dequantize(torch.zeros(1, 64, dtype=torch.uint8), torch.ones(1, 1), QuantSpec(format="nf4"))
    assert float(codes.max()) == -1.0
