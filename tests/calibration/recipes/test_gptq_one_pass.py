"""``gptq`` with ``passes="one"``: the true-sequential result from one forward pass per block."""
from __future__ import annotations

import threading

import pytest
import torch

from calibration.models import find_decoder_blocks, find_linear_layers, linear_weight
from calibration.recipes import GPTQStep, Recipe
from calibration.runner import quantize_model
from calibration.runner.block_inputs import run_block
from ptq.errors import PTQUserError


def _weights(model) -> dict[str, torch.Tensor]:
    return {f"{i}.{n}": linear_weight(m).clone() for i, b in enumerate(find_decoder_blocks(model)[1])
            for n, m in find_linear_layers(b).items()}


@pytest.mark.parametrize("arch, autocast", [("llama", None), ("opt", None), ("gpt2", None), ("llama", "bfloat16")])
def test_one_pass_equals_true_sequential(tiny_model, tiny_segments, arch, autocast):
    ids = tiny_segments(n=10, seqlen=16)
    out = {}
    for kw in ({"true_sequential": True}, {"passes": "one"}):
        model = tiny_model(arch, num_layers=2)
        res = quantize_model(model, Recipe([GPTQStep(bits=3, act_order=True, **kw)]), ids, batch_size=4,
                             progress=False, autocast=autocast)
        with torch.no_grad():
            logits = model(ids).logits
        out[tuple(kw)] = (_weights(model), logits, res.steps[0]["total_loss"])
    (w2, l2, loss2), (w1, l1, loss1) = out.values()
    assert w1.keys() == w2.keys()
    for n in w1:
        assert torch.equal(w1[n], w2[n]), n
    assert torch.equal(l1, l2) and loss1 == loss2


def test_one_pass_runs_each_block_once(tiny_model, tiny_segments, monkeypatch):
    """No runner re-run and no per-group pass: each block's forward is called once per mini-batch
    (plus the one-mini-batch probe of the groups on the first block)."""
    import calibration.runner.runner as runner

    model = tiny_model("llama", num_layers=3)
    calls = {i: 0 for i in range(3)}
    for i, b in enumerate(find_decoder_blocks(model)[1]):
        b.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
    monkeypatch.setattr(runner, "advance_block", lambda *a, **k: pytest.fail("the runner re-ran a block"))
    quantize_model(model, Recipe([GPTQStep(bits=4, passes="one")]), tiny_segments(n=12), batch_size=4,
                   progress=False)
    assert calls == {0: 3 + 1 + 3, 1: 3, 2: 3}  # block 0: catching its inputs, the probe, the pass


def test_one_pass_outputs_are_the_quantized_blocks_outputs(tiny_model, tiny_segments):
    """The in-place outputs equal a re-run of the quantized block on the same inputs."""
    from calibration.runner import BlockContext, catch_block_inputs

    model = tiny_model("llama", num_layers=1)
    block = find_decoder_blocks(model)[1][0]
    inputs = catch_block_inputs(model, block, tiny_segments(n=8), batch_size=4)
    saved = [h.clone() for h in inputs.hidden]
    ctx = BlockContext(block=block, index=0, prefix="model.layers.0", inputs=inputs, records={})
    GPTQStep(bits=4, passes="one").process_block(ctx)
    assert ctx.advanced
    expected = run_block(block, inputs.with_hidden(saved))
    for got, want in zip(inputs.hidden, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_one_pass_before_another_step_leaves_the_re_run_to_the_runner(tiny_model, tiny_segments):
    """Not the last step: the block's inputs stay its inputs for the next step, the runner re-runs it."""
    ids = tiny_segments(n=8)
    got = {}
    for passes in ("one", "two"):
        model = tiny_model("llama", num_layers=2)
        recipe = Recipe([GPTQStep(bits=4, passes=passes, true_sequential=True), GPTQStep(bits=8)])
        quantize_model(model, recipe, ids, batch_size=4, progress=False)
        got[passes] = _weights(model)
    for n in got["one"]:
        assert torch.equal(got["one"][n], got["two"][n]), n


def test_one_pass_nan_input_is_a_user_error_and_leaves_no_thread(tiny_model, tiny_segments):
    model = tiny_model("llama", num_layers=2)
    with torch.no_grad():
        find_decoder_blocks(model)[1][1].input_layernorm.weight.fill_(float("nan"))
    before = threading.active_count()
    with pytest.raises(PTQUserError, match="NaN or inf"):
        quantize_model(model, Recipe([GPTQStep(bits=4, passes="one")]), tiny_segments(n=8), batch_size=2,
                       progress=False)
    assert threading.active_count() == before


def test_passes_is_checked_and_kept_out_of_default_keys():
    with pytest.raises(PTQUserError, match="passes"):
        GPTQStep(passes="three")
    assert "passes" not in GPTQStep().to_dict() and GPTQStep(passes="one").to_dict()["passes"] == "one"
