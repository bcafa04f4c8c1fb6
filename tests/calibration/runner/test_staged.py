"""``run_in_stages``: one pass of a block over all mini-batches, paused at stage layers."""
from __future__ import annotations

import threading

import pytest
import torch

from calibration.models import find_decoder_blocks
from calibration.runner import catch_block_inputs
from calibration.runner.block_inputs import run_block
from calibration.runner.staged import run_in_stages


def _block0(tiny_model, tiny_segments, n=8, batch=2):
    model = tiny_model("llama", num_layers=1)
    block = find_decoder_blocks(model)[1][0]
    return block, catch_block_inputs(model, block, tiny_segments(n=n), batch_size=batch)


def test_every_batch_reaches_a_stage_before_it_changes(tiny_model, tiny_segments):
    block, inputs = _block0(tiny_model, tiny_segments)
    stages = [block.self_attn.o_proj, block.mlp.down_proj]
    events = []
    saved = [h.clone() for h in inputs.hidden]

    def after(k):
        events.append(("after", k))
        with torch.no_grad():
            stages[k].weight.mul_(0.5)  # the change every later computation must see

    run_in_stages(block, inputs, stages, lambda k, x: events.append(("in", k, x.shape[0])), after)
    n = len(inputs)
    assert events == [("in", 0, 2)] * n + [("after", 0)] + [("in", 1, 2)] * n + [("after", 1)]
    for got, want in zip(inputs.hidden, run_block(block, inputs.with_hidden(saved))):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_write_outputs_false_keeps_the_inputs(tiny_model, tiny_segments):
    block, inputs = _block0(tiny_model, tiny_segments)
    saved = [h.clone() for h in inputs.hidden]
    run_in_stages(block, inputs, [block.mlp.up_proj], lambda k, x: None, lambda k: None, write_outputs=False)
    assert all(torch.equal(a, b) for a, b in zip(inputs.hidden, saved))


@pytest.mark.parametrize("where", ["on_input", "after_stage", "forward"])
def test_an_error_propagates_and_no_thread_is_left(tiny_model, tiny_segments, where):
    block, inputs = _block0(tiny_model, tiny_segments)
    stages = [block.self_attn.q_proj, block.mlp.gate_proj]

    def on_input(k, x):
        if where == "on_input" and k == 1:
            raise ValueError("boom")

    def after(k):
        if where == "after_stage" and k == 0:
            raise ValueError("boom")

    if where == "forward":  # a forward failing between two stages, in its third mini-batch
        calls = []

        def bad(m, a):
            calls.append(1)
            if len(calls) == 3:
                raise ValueError("boom")
        block.self_attn.o_proj.register_forward_pre_hook(bad)
    before = threading.active_count()
    with pytest.raises(ValueError, match="boom"):
        run_in_stages(block, inputs, stages, on_input, after)
    assert threading.active_count() == before
    assert not block.self_attn.q_proj._forward_pre_hooks or where == "forward"  # the stage hooks are gone
    assert not block.mlp.gate_proj._forward_pre_hooks


def test_a_keyboard_interrupt_in_the_coordinator_leaves_no_thread(tiny_model, tiny_segments):
    block, inputs = _block0(tiny_model, tiny_segments)
    before = threading.active_count()

    def after(k):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_in_stages(block, inputs, [block.mlp.down_proj], lambda k, x: None, after)
    assert threading.active_count() == before


def test_a_stage_reached_out_of_order_is_an_error(tiny_model, tiny_segments):
    block, inputs = _block0(tiny_model, tiny_segments)
    with pytest.raises(RuntimeError, match="once per forward, in a fixed order"):
        run_in_stages(block, inputs, [block.mlp.down_proj, block.self_attn.q_proj], lambda k, x: None,
                      lambda k: None)


def test_paused_forwards_keep_no_openmp_teams(tiny_model, tiny_segments, two_threads):
    """GNU OpenMP throttles every thread's kernels while more OpenMP threads exist than CPUs, so a
    paused forward ends its thread's worker team (``release_openmp_team``): while a stage's
    callback runs, the process has one thread per paused forward and no team threads of theirs."""
    import os
    import sys

    from ptq.kernels.openmp import openmp_runtime

    if not sys.platform.startswith("linux") or openmp_runtime() is None:
        pytest.skip("needs Linux and PyTorch's OpenMP runtime")
    block, inputs = _block0(tiny_model, tiny_segments)
    big = torch.ones(1 << 22)
    float(big.sum())  # this thread's own team exists before the count
    before = len(os.listdir("/proc/self/task"))
    during = []

    def on_input(k, x):
        float(big.sum())  # a parallel kernel in the forward's thread: it gets a team of its own

    def after_stage(k):
        import time

        deadline = time.monotonic() + 2  # ended team threads leave on their own schedule
        while len(os.listdir("/proc/self/task")) > before + len(inputs) and time.monotonic() < deadline:
            time.sleep(0.01)
        during.append(len(os.listdir("/proc/self/task")))

    run_in_stages(block, inputs, [block.mlp.down_proj], on_input, after_stage)
    assert during and during[0] <= before + len(inputs), (before, len(inputs), during)
