"""SmoothQuant: Eq. 4 scales, folding leaves the float block unchanged, groups found on every tiny arch."""
import pytest
import torch

from calibration.models.blocks import find_decoder_blocks, linear_weight
from calibration.runner.block_inputs import catch_block_inputs, run_block
from ptq.algorithms.smoothquant import apply_smoothing, group_weight_absmax, smooth_scales, smoothing_groups

EXPECTED = {
    "llama": {"input_layernorm", "post_attention_layernorm", "mlp.up_proj"},
    "qwen2": {"input_layernorm", "post_attention_layernorm", "mlp.up_proj"},
    "mistral": {"input_layernorm", "post_attention_layernorm", "mlp.up_proj"},
    "opt": {"self_attn_layer_norm", "final_layer_norm", "self_attn.v_proj", "fc1"},
    "gpt2": {"ln_1", "ln_2"},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_smooth_scales_formula_and_clamp() -> None:
    a = torch.tensor([4.0, 0.0, 9.0])
    w = torch.tensor([1.0, 2.0, 0.0])
    s = smooth_scales(a, w, 0.5)
    assert s[0] == pytest.approx(2.0)
    assert torch.isfinite(s).all() and (s > 0).all()  # zero activation / zero weight channels
    torch.testing.assert_close(smooth_scales(a, w, 1.0)[:1], torch.tensor([4.0]))
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="alpha"):
            smooth_scales(a, w, bad)
    with pytest.raises(ValueError, match="inf"):
        smooth_scales(torch.tensor([float("inf"), 1.0, 1.0]), w, 0.5)


@pytest.mark.parametrize("arch", ["llama", "opt", "gpt2", "qwen2", "mistral"])
def test_smoothing_alone_keeps_block_outputs(arch: str, tiny_model) -> None:
    model = tiny_model(arch, 1)
    _, blocks = find_decoder_blocks(model)
    block = blocks[0]
    inputs = catch_block_inputs(model, block, torch.randint(0, 128, (2, 16)), 2)
    run = lambda: run_block(block, inputs)  # noqa: E731
    ref = run()
    plan = smoothing_groups(block, run, prev_linear=True)
    assert {g.source for g in plan.groups} == EXPECTED[arch]
    modules = dict(block.named_modules())
    g = torch.Generator().manual_seed(0)
    for group in plan.groups:
        linears = [modules[n] for n in group.linears]
        K = linear_weight(linears[0]).shape[1]
        act = torch.rand(K, generator=g) * 50  # outlier-like activation ranges
        act[0] = 0.0  # a dead channel
        s = smooth_scales(act, group_weight_absmax(linears), 0.5)
        apply_smoothing(modules[group.source], linears, s)
    for a, b in zip(run(), ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unsmoothed_layers_are_explained(tiny_model) -> None:
    model = tiny_model("llama", 1)
    _, blocks = find_decoder_blocks(model)
    inputs = catch_block_inputs(model, blocks[0], torch.randint(0, 128, (1, 8)), 1)
    plan = smoothing_groups(blocks[0], lambda: run_block(blocks[0], inputs))
    assert set(plan.unsmoothed) == {"self_attn.o_proj", "mlp.down_proj"}
    assert all("norm" in reason for reason in plan.unsmoothed.values())
