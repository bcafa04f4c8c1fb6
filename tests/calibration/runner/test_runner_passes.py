"""Calibration forward passes: early stop once the observed layers had their inputs; autocast."""
from __future__ import annotations

import warnings

import pytest
import torch

from calibration.models import find_decoder_blocks
from calibration.observers import make_observer
from calibration.recipes import GPTQStep, Recipe
from calibration.runner import BlockContext, catch_block_inputs, quantize_model
from calibration.runner.block_inputs import autocast_dtype


def _context(model, segments, autocast=None) -> BlockContext:
    _, blocks = find_decoder_blocks(model)
    inputs = catch_block_inputs(model, blocks[0], segments, batch_size=2)
    return BlockContext(block=blocks[0], index=0, prefix="model.layers.0", inputs=inputs, records={},
                        autocast=autocast)


def _count_calls(module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda m, a: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("arch", ["llama", "opt", "gpt2"])
def test_early_stop_gives_the_same_statistics_and_skips_the_rest(tiny_model, tiny_segments, arch):
    model = tiny_model(arch)
    ctx = _context(model, tiny_segments(n=8), None)
    layers = ctx.linear_layers()
    first, last = list(layers)[0], list(layers)[-1]
    later = _count_calls(layers[last])
    stats = ctx.observe_inputs([first], lambda n, l: make_observer("absmax-per-channel", axis=-1))
    assert later[0] == 1  # only the first mini-batch (of 4) ran past the observed layer
    full = make_observer("absmax-per-channel", axis=-1)
    hook = layers[first].register_forward_pre_hook(lambda m, a: full.update(a[0]))
    ctx.run()
    hook.remove()
    torch.testing.assert_close(stats[first].absmax, full.absmax, rtol=0, atol=0)


def test_no_early_stop_when_a_layer_runs_twice_per_pass(tiny_model, tiny_segments):
    model = tiny_model("llama")
    ctx = _context(model, tiny_segments(n=4), None)
    layers = ctx.linear_layers()
    name, layer = next(iter(layers.items()))
    block_forward = ctx.block.forward

    def forward_calling_the_layer_twice(*args, **kwargs):
        layer(torch.zeros(1, layer.in_features))
        return block_forward(*args, **kwargs)

    ctx.block.forward = forward_calling_the_layer_twice
    last = _count_calls(list(layers.values())[-1])
    ctx.observe_inputs([name], lambda n, l: make_observer("absmax-per-channel", axis=-1))
    assert last[0] == 2  # both mini-batches ran to the end


def test_autocast_passes_keep_float32_weights_and_close_results(tiny_model, tiny_segments):
    segs = tiny_segments(n=4, seqlen=16)
    fp, ref, amp = tiny_model("llama"), tiny_model("llama"), tiny_model("llama")
    step = {"step": "gptq", "bits": 4, "granularity": "channel"}
    r_ref = quantize_model(ref, Recipe.from_list([dict(step)]), segs, batch_size=2, progress=False)
    with warnings.catch_warnings():  # on a CPU without native bf16 a slowness warning is expected
        warnings.simplefilter("ignore")
        r_amp = quantize_model(amp, Recipe.from_list([dict(step)]), segs, batch_size=2, progress=False,
                               autocast="bfloat16")
    assert r_amp.to_json()["autocast"] == "bfloat16" and "autocast" not in r_ref.to_json()
    assert all(p.dtype == torch.float32 for p in amp.parameters())
    for name, rec in r_ref.records.items():  # the same per-channel grid (from W, before the column loop)
        torch.testing.assert_close(r_amp.records[name].scale, rec.scale, rtol=0, atol=0)
    with torch.no_grad():
        y, y_ref, y_amp = (m(segs).logits for m in (fp, ref, amp))
    assert float((y_amp - y_ref).norm()) < 0.5 * float((y_ref - y).norm())  # far below the quantization error


@pytest.mark.parametrize("native", [True, False])
def test_autocast_warns_where_the_cpu_emulates_the_dtype(native, tiny_model, tiny_segments, monkeypatch):
    import calibration.runner.runner as runner_module

    monkeypatch.setattr(runner_module, "native_cpu_dtype", lambda dtype: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_model(tiny_model("llama"), Recipe([GPTQStep()]), tiny_segments(n=2, seqlen=8), progress=False,
                       autocast="bfloat16")
    slow = [w for w in caught if "no native bfloat16 matmul" in str(w.message)]
    assert len(slow) == (0 if native else 1)


def test_autocast_names():
    assert autocast_dtype(None) is None and autocast_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="autocast must be one of"):
        autocast_dtype("int8")
    with pytest.raises(ValueError, match="autocast must be one of"):
        quantize_model(torch.nn.Linear(2, 2), Recipe([GPTQStep()]), None, autocast="fp8")
