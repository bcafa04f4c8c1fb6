"""The ``q4_0`` chooser: llama.cpp's Q4_0 rule on ptq's grid. RTN with it is byte for byte the ``gguf``
package's own ``Q4_0`` quantizer (ties included), the rule generalises to ``b`` bits as a slow
per-block loop spells it out, and GPTQ on it exports as ``Q4_0`` with its codes unchanged."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from ptq import QuantSpec
from ptq.algorithms import gptq
from ptq.algorithms.rtn import rtn_qparams
from ptq.checkpoint.gguf_blocks import misfit, pack_blocks, spec_misfit
from ptq.checkpoint.layer_grid import layer_grid
from ptq.choosers import get_qparams
from ptq.choosers.q4_0 import q4_0_codes, q4_0_qparams
from ptq.errors import PTQUserError
from ptq.modules import QuantLinear
from ptq.quantize import quantize

Q4_0 = QuantSpec(4, granularity="group", group_size=32, scale_dtype="float16")


def packed(W: torch.Tensor, q) -> QuantLinear:
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    lin.weight.data.copy_(q.weight)
    return QuantLinear.from_float(lin, q.spec, q.scale, q.zero, g_idx=q.g_idx)


def gguf_q4_0(W: torch.Tensor) -> np.ndarray:
    return gguf.quants.quantize(W.numpy(), gguf.GGMLQuantizationType.Q4_0)


def tie_heavy(rows: int = 32, cols: int = 256, seed: int = 0) -> torch.Tensor:
    """Weights on a Q4_1-like grid per block (as SmolLM2's), so x / d often lands exactly on .5 and
    on both signs of the absmax, plus an all-zero block and blocks whose |min| = |max|."""
    g = torch.Generator().manual_seed(seed)
    d = 2.0 ** torch.randint(-9, -5, (rows, cols // 32, 1), generator=g).float()
    m = -d * torch.randint(0, 16, (rows, cols // 32, 1), generator=g).float()
    W = (d * torch.randint(0, 16, (rows, cols // 32, 32), generator=g).float() + m).reshape(rows, cols)
    W[0, :32] = 0
    W[1, :32] = torch.tensor([0.5, -0.5] * 16)
    W[2, :32] = torch.tensor([-0.25, 0.25] * 16)
    return W


@pytest.mark.parametrize("W", [torch.randn(48, 256, generator=torch.Generator().manual_seed(3)), tie_heavy()],
                         ids=["gaussian", "ties"])
def test_rtn_q4_0_is_gguf_q4_0_byte_for_byte(W):
    q = rtn_qparams(W, Q4_0, "q4_0")
    ours = pack_blocks(layer_grid(packed(W, q)), "Q4_0")
    ref = gguf_q4_0(W)
    same = ours == ref
    zero_block = np.zeros_like(same)
    zero_block[0, :18] = True  # an all-zero block: gguf stores d = -0.0, ptq a positive d; both decode to 0
    assert same[~zero_block].all()
    assert np.array_equal(gguf.quants.dequantize(ours, gguf.GGMLQuantizationType.Q4_0), q.weight.numpy())


def test_reference_rounding_is_not_nearest_on_the_stored_grid():
    """Why the chooser carries its own rounding: gguf chooses codes with the float32 d, then stores a
    float16 d, so some codes are not the nearest level of the stored grid (RTN follows gguf)."""
    W = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    scale, zero = q4_0_qparams(W, Q4_0)
    nearest, ref = quantize(W, scale, zero, Q4_0), q4_0_codes(W, Q4_0)
    assert 0 < int((nearest != ref).sum()) < W.numel() // 100
    assert int((nearest.int() - ref.int()).abs().max()) == 1


def slow_q_b_0(W: np.ndarray, bits: int, g: int) -> np.ndarray:
    """The rule spelled out block by block in float32: d = m / -2^(b-1), m the first value of largest |x|,
    c = min(maxq, trunc(x / d + 2^(b-1) + 0.5)), x ~ float16(d) (c - 2^(b-1))."""
    half, maxq = 2 ** (bits - 1), 2**bits - 1
    out = np.empty_like(W)
    for r in range(W.shape[0]):
        for b0 in range(0, W.shape[1], g):
            x = W[r, b0 : b0 + g]
            m = x[int(np.argmax(np.abs(x)))]
            d = np.float32(m) / np.float32(-half)
            inv = np.float32(0) if d == 0 else np.float32(1) / d
            c = [min(maxq, max(0, int(np.trunc(np.float32(np.float32(v * inv) + np.float32(half + 0.5))))))
                 for v in x]
            out[r, b0 : b0 + g] = np.float32(np.float16(d)) * (np.array(c, np.float32) - half)
    return out


@pytest.mark.parametrize("bits,g", [(4, 32), (3, 64), (2, 32), (5, 16)])
def test_b_bit_rule_matches_a_slow_loop(bits, g):
    W = torch.randn(8, 128, generator=torch.Generator().manual_seed(bits))
    spec = QuantSpec(bits, granularity="group", group_size=g, scale_dtype="float16")
    q = rtn_qparams(W, spec, "q4_0")
    assert np.array_equal(q.weight.numpy(), slow_q_b_0(W.numpy(), bits, g))
    scale, zero = q4_0_qparams(W, spec)
    m = W.reshape(8, -1, g).gather(2, W.reshape(8, -1, g).abs().argmax(2, keepdim=True)).squeeze(2)
    assert torch.equal(zero, torch.where(m > 0, 2.0 ** (bits - 1) - 1, 2.0 ** (bits - 1)))  # the sign in the zero
    assert bool((scale > 0).all()) and torch.equal(scale, scale.half().float())


def test_channel_and_tensor_units_and_float32_scales():
    W = torch.randn(6, 40, generator=torch.Generator().manual_seed(1))
    for gran in ("channel", "tensor"):
        spec = QuantSpec(4, granularity=gran)
        scale, zero = q4_0_qparams(W, spec)
        assert scale.shape == ((6, 1) if gran == "channel" else (1, 1)) and zero.shape == scale.shape
        m = W.abs().amax() if gran == "tensor" else W.abs().amax(1, keepdim=True)
        assert torch.allclose(scale, m / 8)  # float32 scales: |d| exactly


def test_symmetric_or_float_zero_spec_is_refused():
    with pytest.raises(PTQUserError, match="asymmetric"):
        q4_0_qparams(torch.randn(4, 32), QuantSpec(4, symmetric=True, granularity="group", group_size=32))
    with pytest.raises(PTQUserError, match="asymmetric"):
        q4_0_qparams(torch.randn(4, 32), QuantSpec(4, granularity="group", group_size=32, zero_dtype="float16"))


def test_registered_with_its_rounding():
    chooser = get_qparams("q4_0")
    assert chooser.rounding is q4_0_codes and not chooser.uses_importance and not chooser.float_zero


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_on_the_q4_0_grid_exports_as_q4_0_exactly(act_order):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 128, generator=g)
    X = torch.randn(256, 128, generator=g) * torch.linspace(0.2, 2.0, 128)
    res = gptq(W, 2 * X.t() @ X / 256, Q4_0, act_order=act_order, static_groups=True, qparams="q4_0")
    grid = layer_grid(packed(W, res))
    assert misfit(grid, "Q4_0") is None
    deq = gguf.quants.dequantize(pack_blocks(grid, "Q4_0"), gguf.GGMLQuantizationType.Q4_0)
    assert np.array_equal(deq, res.weight.numpy())


def test_dynamic_act_order_groups_are_still_refused():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 128, generator=g)
    X = torch.randn(256, 128, generator=g) * torch.linspace(0.2, 2.0, 128)
    res = gptq(W, 2 * X.t() @ X / 256, Q4_0, act_order=True, qparams="q4_0")
    assert "act-order" in (misfit(layer_grid(packed(W, res)), "Q4_0") or "")


def test_spec_check_before_calibration_knows_q4_0():
    assert spec_misfit(4, False, "group", 32, "Q4_0") is not None  # min-max asymmetric: -15..15
    assert spec_misfit(4, False, "group", 32, "Q4_0", qparams="q4_0") is None
    assert spec_misfit(4, False, "group", 64, "Q4_0", qparams="q4_0") is None
    assert "Q4_1" in (spec_misfit(5, False, "group", 32, "Q4_1", qparams="q4_0") or "")
