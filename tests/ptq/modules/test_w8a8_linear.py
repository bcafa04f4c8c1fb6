"""W8A8Linear: the int and fake paths agree, the output is close to the float layer, swap registry."""
import pytest
import torch

from ptq.kernels import cpu_int8_support
from torch import nn
from transformers.pytorch_utils import Conv1D

from ptq.modules.swap import qmodule_entry, to_float
from ptq.modules.w8a8_linear import W8A8Linear


pytestmark = pytest.mark.usefixtures("one_thread")


def _layer(conv: bool = False) -> nn.Module:
    torch.manual_seed(0)
    if conv:
        m = Conv1D(48, 64)
        nn.init.normal_(m.weight, std=0.1)
        nn.init.normal_(m.bias, std=0.1)
        return m
    return nn.Linear(64, 48)


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("act", ["per-token", "static"])
def test_int_and_fake_agree_and_close_to_float(conv: bool, act: str) -> None:
    layer = _layer(conv)
    x = torch.randn(2, 20, 64)
    scale = float(x.abs().max()) / 127 if act == "static" else None
    q = W8A8Linear.from_float(layer, act=act, act_scale=scale)
    y_int = q(x)
    q.mode = "fake"
    y_fake = q(x)
    torch.testing.assert_close(y_int, y_fake, rtol=1e-5, atol=1e-5)
    y = layer(x)
    rel = float((y_int - y.detach()).norm() / y.detach().norm())
    assert rel < 0.02, rel
    assert y_int.shape == y.shape


def test_small_batch_uses_fallback_kernel() -> None:
    q = W8A8Linear.from_float(_layer(), act="per-token")
    x = torch.randn(3, 64)  # M = 3 <= 16: torch._int_mm refuses, fbgemm or float computes it
    y_int = q(x)
    q.mode = "fake"
    torch.testing.assert_close(y_int, q(x), rtol=1e-5, atol=1e-5)


def test_zero_rows_and_bad_inputs() -> None:
    q = W8A8Linear.from_float(_layer(), act="per-token")
    x = torch.zeros(20, 64)
    torch.testing.assert_close(q(x), q.bias.expand(20, -1))
    x[3, 5] = float("inf")
    with pytest.raises(ValueError, match="inf"):
        q(x)
    with pytest.raises(ValueError, match="act_scale"):
        W8A8Linear.from_float(_layer(), act="static")
    with pytest.raises(ValueError, match="act must be"):
        W8A8Linear.from_float(_layer(), act="token")
    static = W8A8Linear.from_float(_layer(), act="static", act_scale=0.01)
    assert torch.isfinite(static(x)).all()  # static scales saturate inf to +-127


def test_registry_config_and_to_float() -> None:
    layer = _layer(conv=True)
    q = W8A8Linear.from_float(layer, act="static", act_scale=0.02)
    assert qmodule_entry("w8a8").cls is W8A8Linear
    cfg = q.quant_config()
    skel = W8A8Linear.from_config(layer, cfg)
    assert skel.qweight.device.type == "meta" and skel.act_scale is not None
    skel.load_state_dict(q.state_dict(), assign=True)
    x = torch.randn(20, 64)
    torch.testing.assert_close(skel(x), q(x))
    model = nn.Sequential(q)
    to_float(model)
    assert isinstance(model[0], Conv1D)
    torch.testing.assert_close(model[0].weight.t(), q.dequantize_weight())


@pytest.mark.parametrize("backend", ["fbgemm", "float"])
def test_packed_weight_is_cached_and_refreshed(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "fbgemm" and not cpu_int8_support().fbgemm_exact:
        pytest.skip(cpu_int8_support().describe())
    monkeypatch.setenv("PTQ_INT8_BACKEND", backend)
    q = W8A8Linear.from_float(_layer(), act="per-token")
    x = torch.randn(2, 64)
    y1 = q(x)
    packed = q._packed_weight(2)
    assert packed is not None and packed.backend == backend and q._packed_weight(2) is packed
    q.qweight.mul_(-1)  # in-place change: the cached pack must be rebuilt
    assert q._packed_weight(2) is not packed
    torch.testing.assert_close(q(x) - q.bias, -(y1 - q.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conv", [False, True])
def test_weight_on_a_given_grid_keeps_its_codes(conv: bool) -> None:
    """A weight already on an 8-bit symmetric grid (GPTQ W8: codes -128..127) is not rounded again."""
    from ptq.modules.quant_linear import weight_2d

    layer = _layer(conv)
    W = weight_2d(layer).detach()
    s = W.abs().amax(dim=1) / 127.5
    codes = torch.randint(-128, 128, W.shape)
    codes[:, 0] = -128  # the grid's extra negative code
    with torch.no_grad():
        (layer.weight.copy_((codes * s[:, None]).T) if conv else layer.weight.copy_(codes * s[:, None]))
    q = W8A8Linear.from_float(layer, act="per-token", weight_scale=s[:, None])
    assert torch.equal(q.qweight.long(), codes) and torch.equal(q.weight_scale, s)
    torch.testing.assert_close(q.dequantize_weight(), codes * s[:, None], rtol=0, atol=0)
    x = torch.randn(5, 20, 64)
    y_int = q(x)
    q.mode = "fake"
    torch.testing.assert_close(y_int, q(x), rtol=1e-5, atol=1e-5)
    requantized = W8A8Linear.from_float(layer, act="per-token")  # the absmax grid would move most codes
    assert not torch.equal(requantized.dequantize_weight(), q.dequantize_weight())


def test_weight_off_the_given_grid_is_refused() -> None:
    layer = _layer()
    s = layer.weight.detach().abs().amax(dim=1) / 127
    with pytest.raises(ValueError, match="does not lie on the given 8-bit grid"):
        W8A8Linear.from_float(layer, weight_scale=s)
    with pytest.raises(ValueError, match="weight_scale must hold 48 positive finite"):
        W8A8Linear.from_float(layer, weight_scale=s[:10])
    with pytest.raises(ValueError, match="weight_scale must hold 48 positive finite"):
        W8A8Linear.from_float(layer, weight_scale=torch.zeros(48))
