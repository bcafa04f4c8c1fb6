"""QuantLinear: packed storage, exact reproduction of fake-quantized layers, swapping."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.pytorch_utils import Conv1D

from ptq import QuantSpec, pack_codes, quantize, unpack_codes
from ptq.algorithms import gptq, rtn
from ptq.modules import QuantLinear, is_qmodule, quantize_modules, to_float
from ptq.modules.quant_linear import unpack_rows
from ptq.packing import packed_length

SPECS = [
    QuantSpec(2, granularity="tensor"),
    QuantSpec(3, granularity="group", group_size=32),
    QuantSpec(4),
    QuantSpec(4, symmetric=True, granularity="group", group_size=16),
    QuantSpec(8, symmetric=True),
    QuantSpec(8, granularity="group", group_size=32),
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: one intra-op thread (a busy shared machine makes 2 threads ~100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fake_quant_linear(spec: QuantSpec, in_features: int = 64, out_features: int = 48, bias: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    lin = nn.Linear(in_features, out_features, bias=bias)
    q = rtn(lin.weight.data, spec)
    lin.weight.data.copy_(q.weight)
    return lin, q


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_fast_unpack_matches_reference_unpack(bits):
    torch.manual_seed(bits)
    for n in (1, 7, 31, 32, 33, 100):
        codes = torch.randint(0, 1 << bits, (5, n))
        packed = pack_codes(codes, bits)
        assert torch.equal(unpack_rows(packed, bits, n).long(), unpack_codes(packed, bits, n).long())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_reproduces_fake_quant_layer_bit_for_bit(spec):
    lin, q = fake_quant_linear(spec)
    ql = QuantLinear.from_float(lin, spec, q.scale, q.zero)
    assert ql.qweight.dtype == torch.int32 and ql.qweight.shape == (48, packed_length(64, spec.bits))
    assert (ql.qzeros is None) == spec.symmetric
    assert torch.equal(ql.codes().long(), quantize(lin.weight.data, q.scale, q.zero, spec).long())
    assert torch.equal(ql.dequantize_weight(), lin.weight.data)
    x = torch.randn(2, 5, 64)
    assert torch.equal(ql(x), lin(x))
    xb = x.bfloat16()
    ql.backend = "cached"  # exact; "auto" may pick a fused bf16 kernel for so few rows (test_quant_linear_backends)
    assert torch.equal(ql(xb), nn.functional.linear(xb, lin.weight.bfloat16(), lin.bias.bfloat16()))


@pytest.mark.parametrize("spec", SPECS[1:4], ids=lambda s: s.describe())
def test_float16_scales_same_codes_small_output_change(spec):
    """Measured: float16 scales keep the codes but move outputs by ~1e-3 (hence scale_dtype='auto')."""
    lin, q = fake_quant_linear(spec)
    auto = QuantLinear.from_float(lin, spec, q.scale, q.zero)
    half = QuantLinear.from_float(lin, spec, q.scale, q.zero, scale_dtype="float16")
    assert auto.scales.dtype == torch.float32 and half.scales.dtype == torch.float16
    assert torch.equal(auto.codes(), half.codes())
    x = torch.randn(4, 64)
    diff = (half(x) - lin(x)).abs().max().item()
    assert 0 < diff < 5e-3
    # scales that are float16 numbers are stored as float16 by 'auto', losslessly
    exact = QuantLinear.from_float(lin, spec, q.scale.half().float(), q.zero, check=False)
    assert exact.scales.dtype == torch.float16


def test_act_order_g_idx():
    torch.manual_seed(0)
    spec = QuantSpec(4, granularity="group", group_size=16)
    lin = nn.Linear(64, 32)
    X = torch.randn(256, 64) * torch.linspace(0.1, 3, 64)
    res = gptq(lin.weight.data, 2 * X.t() @ X / 256, spec, act_order=True)
    lin.weight.data.copy_(res.weight)
    ql = QuantLinear.from_float(lin, spec, res.scale, res.zero, g_idx=res.g_idx)
    assert ql.g_idx is not None and not torch.equal(ql.g_idx.long(), torch.arange(64) // 16)
    assert torch.equal(ql.dequantize_weight(), lin.weight.data)
    # consecutive groups store no g_idx
    lin2, q2 = fake_quant_linear(spec)
    assert QuantLinear.from_float(lin2, spec, q2.scale, q2.zero, g_idx=torch.arange(64) // 16).g_idx is None


def test_conv1d_and_to_float():
    torch.manual_seed(0)
    spec = QuantSpec(4, granularity="group", group_size=32)
    conv = Conv1D(48, 64)  # nf=out, nx=in: weight [in, out]
    q = rtn(conv.weight.data.t(), spec)
    conv.weight.data.copy_(q.weight.t())
    ql = QuantLinear.from_float(conv, spec, q.scale, q.zero)
    assert ql.float_class == "Conv1D" and (ql.in_features, ql.out_features) == (64, 48)
    x = torch.randn(3, 64)
    torch.testing.assert_close(ql(x), conv(x), rtol=1e-6, atol=1e-6)
    back = ql.to_float()
    assert isinstance(back, Conv1D) and torch.equal(back.weight, conv.weight)


def test_tiled_forward_and_dtype_moves():
    spec = QuantSpec(3, granularity="group", group_size=32)
    lin, q = fake_quant_linear(spec, out_features=70)
    ql = QuantLinear.from_float(lin, spec, q.scale, q.zero)
    x = torch.randn(6, 64)
    full = ql(x)
    ql.tile_rows = 16
    torch.testing.assert_close(ql(x), full, rtol=1e-6, atol=1e-6)
    ql.to(torch.bfloat16)
    assert ql.scales.dtype == torch.float32 and ql.bias.dtype == torch.bfloat16  # scales are never rounded


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_footprint_bytes(spec):
    lin, q = fake_quant_linear(spec, in_features=128, out_features=64)
    ql = QuantLinear.from_float(lin, spec, q.scale, q.zero, scale_dtype="float16")
    n_qparams = q.scale.numel()
    expected = 64 * 128 * spec.bits // 8 + 2 * n_qparams + 64 * 4  # codes + fp16 scales + fp32 bias
    if not spec.symmetric:
        rows = 1 if spec.granularity == "tensor" else 64
        expected += (n_qparams // rows) * packed_length(rows, spec.bits) * 4
    assert ql.footprint_bytes() == expected


def test_off_grid_weight_is_refused():
    spec = QuantSpec(4)
    lin, q = fake_quant_linear(spec)
    lin.weight.data[0, 0] += 0.3 * q.scale[0, 0]
    with pytest.raises(ValueError, match="not on its quantization grid"):
        QuantLinear.from_float(lin, spec, q.scale, q.zero)


def test_quantize_modules_and_to_float_on_a_tiny_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    spec = QuantSpec(4, granularity="group", group_size=32)
    records = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name.startswith("model.layers.") and not name.endswith("down_proj"):
            q = rtn(m.weight.data, spec)
            m.weight.data.copy_(q.weight)
            records[name] = SimpleNamespace(method="rtn", spec=spec, scale=q.scale, zero=q.zero, g_idx=None)
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        ref = model(ids).logits
    swapped = quantize_modules(model, records)
    assert sorted(swapped) == sorted(records)
    assert isinstance(model.model.layers[0].mlp.down_proj, nn.Linear)  # untouched
    assert not is_qmodule(model.lm_head)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref)
    assert sorted(to_float(model)) == sorted(records)
    assert not any(is_qmodule(m) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref)
