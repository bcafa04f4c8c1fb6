"""A model quantized by [smoothquant, w8a8] saves and loads back with the same logits."""
import pytest
import torch

from calibration.recipes import Recipe, SmoothQuantStep, W8A8Step
from calibration.runner import quantize_model
from ptq.checkpoint import load_quantized, save_quantized
from ptq.modules.w8a8_linear import W8A8Linear


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("arch,act", [("llama", "static"), ("gpt2", "per-token")])
def test_roundtrip(arch: str, act: str, tiny_model, tiny_segments, tmp_path) -> None:
    model = tiny_model(arch, 1)
    res = quantize_model(model, Recipe([SmoothQuantStep(alpha=0.5), W8A8Step(act=act)]), tiny_segments(2, 16),
                         batch_size=2, progress=False)
    ids = tiny_segments(1, 16, seed=3)
    with torch.no_grad():
        ref = model(ids).logits
    save_quantized(model, tmp_path / "ckpt", records=res.records, extra=res.to_json())
    loaded, _ = load_quantized(tmp_path / "ckpt")
    assert sum(isinstance(m, W8A8Linear) for m in loaded.modules()) == sum(
        isinstance(m, W8A8Linear) for m in model.modules()) > 0
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, ref)
