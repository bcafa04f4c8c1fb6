"""The plan's estimate from shapes alone: exact parameter counts from a config on the meta device,
the memory parts of a 7B-shaped GPTQ run, checkpoint size against a published GPTQ file, and the
machine's limits (MemAvailable, cgroup)."""
from __future__ import annotations

import pytest
import torch

from calibration.plan import RunSpec, estimate, estimate_eval, output_bytes, shape_of_config
from calibration.plan import machine

GiB = 2**30


@pytest.fixture(scope="module")
def llama7b():
    """Llama-2-7B's published config (shapes only; nothing is allocated)."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False)
    return shape_of_config(cfg, "float16")


def test_shapes_of_a_7b_config_without_weights(llama7b):
    assert llama7b.params == 6_738_415_616  # Llama-2-7B's parameter count
    assert llama7b.num_blocks == 32 and llama7b.max_positions == 4096 and not llama7b.tied
    assert llama7b.linears["mlp.down_proj"] == (4096, 11008) and llama7b.block_linear_params == 202_375_168


def test_7b_gptq_plan_parts(llama7b):
    steps = [{"step": "gptq", "bits": 4, "granularity": "group", "group_size": 128}]
    run = RunSpec(steps, True, nsamples=128, seqlen=2048, batch_size=8)
    e = estimate(llama7b, run, base=400 * 2**20, rate=1e11)
    assert e.parts["inputs"] == 128 * 2048 * 4096 * 2 + 128 * 2048 * 2 * 128 * 2  # hidden states + rotary cos/sin
    hessians = (6 * 4096**2 + 11008**2) * 4
    first_solve = hessians + 3 * 4096**2 * 4 + 3 * 4096**2 * 4  # every Hessian alive, q_proj's copy, inverse, factor
    down_solve = 3 * 11008**2 * 4 + 3 * 4096 * 11008 * 4  # down_proj's own Hessian overwritten
    assert e.parts["step"] == max(first_solve, down_solve) == down_solve
    assert e.parts["weights"] == (llama7b.params - llama7b.embed_params) * 2
    assert e.host_peak == max(e.phases.values()) and 17 * GiB < e.phases["calibrate"] < 20 * GiB
    assert e.phases["save"] > e.phases["calibrate"]  # the fake-quantized weights + packed codes + safetensors' bytes copy
    assert e.work_bytes == 32 * llama7b.block_params * 2 + 2 * e.parts["inputs"] - 2 * 128 * 2048 * 2 * 128 * 2
    # TheBloke/Llama-2-7B-GPTQ (4 bit, group 128, no act-order): model.safetensors is 3.90 GB
    assert abs(output_bytes(llama7b, steps) / 3.90e9 - 1) < 0.05


def test_rtn_plan_has_no_calibration_memory_and_eval_counts_logits(llama7b):
    e = estimate(llama7b, RunSpec([{"step": "rtn", "bits": 4}], False), base=0, rate=1e11)
    assert e.parts["inputs"] == 0 and e.work_bytes == 0 and "gptq_solve" not in e.seconds_parts
    ev = estimate_eval(llama7b, 2048, 10, base=0, rate=1e11)
    assert ev.parts["logits"] == 2 * 2048 * 32000 * 4 and ev.host_peak > llama7b.params * 2


def test_accelerator_plan_splits_host_and_device(llama7b):
    run = RunSpec([{"step": "gptq", "bits": 4}], True, device=torch.device("cuda"))
    e = estimate(llama7b, run, base=0, rate=1e12)
    assert e.accel_peak is not None and e.accel_peak > llama7b.params * 2


def test_time_scales_with_the_work(llama7b):
    small = estimate(llama7b, RunSpec([{"step": "gptq", "bits": 4}], True, nsamples=32), base=0, rate=1e11)
    big = estimate(llama7b, RunSpec([{"step": "gptq", "bits": 4}], True, nsamples=128), base=0, rate=1e11)
    assert big.seconds_parts["calibrate"] == pytest.approx(4 * small.seconds_parts["calibrate"])


def test_cgroup_limit_caps_available_memory(monkeypatch):
    values = {"/sys/fs/cgroup/memory.max": 8 * GiB, "/sys/fs/cgroup/memory.current": 6 * GiB}
    monkeypatch.setattr(machine, "_read_int", lambda path: values.get(path))
    monkeypatch.setattr(machine, "meminfo_available", lambda: 100 * GiB)
    assert machine.available_memory() == 2 * GiB
    values.clear()  # "max": no limit
    assert machine.available_memory() == 100 * GiB


def test_machine_probe_and_meminfo():
    assert machine.meminfo_available() > 0 and machine.current_rss() > 0
    assert machine.matmul_rate(64, 64, m=64, repeats=1) > 0


def test_7b_streamed_plan_holds_one_block(llama7b):
    """Streamed (one block read from disk at a time): the block phase holds one block, not the model,
    so the peak does not grow with depth; the last phase holds the tensors outside the blocks."""
    import dataclasses

    steps = [{"step": "gptq", "bits": 4}]
    run = RunSpec(steps, True, nsamples=8, seqlen=256, batch_size=8, stream=True, work_folder=False)
    e = estimate(llama7b, run, base=400 * 2**20, rate=1e11)
    block = llama7b.block_params * 2
    assert e.parts["weights"] == block + 4096 * 2  # one block and the final norm
    assert e.work_bytes == 0 and e.phases["save"] == 400 * 2**20 + (llama7b.embed_params + llama7b.other_params) * 2
    deeper = estimate(dataclasses.replace(llama7b, num_blocks=80), run, base=400 * 2**20, rate=1e11)
    assert deeper.phases["calibrate"] == e.phases["calibrate"]
    whole = estimate(llama7b, dataclasses.replace(run, stream=False, work_folder=True), base=400 * 2**20, rate=1e11)
    assert e.host_peak < whole.host_peak / 4
    ev, ev_stream = (estimate_eval(llama7b, 512, 40, 400 * 2**20, 1e11, stream=s) for s in (False, True))
    assert ev_stream.host_peak < ev.host_peak / 4


def test_passes_without_the_re_run_and_the_float_model_outputs(llama7b):
    """SmoothQuant's float-model statistics and a last one-pass GPTQ step have the next block's inputs from their own
    pass: one pass per block instead of two (the runner's re-run is skipped); the float-model outputs are held
    beside the inputs."""
    from calibration.plan.estimate import passes_per_block, step_working_set

    sq = {"step": "smoothquant", "alpha": 0.5}
    w8a8 = {"step": "w8a8", "act": "per-token"}
    assert passes_per_block([sq, w8a8], 128) == 2
    assert passes_per_block([{**sq, "statistics": "float-model"}, w8a8], 128) == 1
    assert passes_per_block([{"step": "gptq", "bits": 4}], 128) == 2
    assert passes_per_block([{"step": "gptq", "bits": 4, "passes": "one"}], 128) == 1
    assert passes_per_block([{"step": "gptq", "passes": "one"}, {"step": "gptq", "bits": 8}], 128) == 3
    inputs = 10**9
    extra = step_working_set(llama7b, [{**sq, "statistics": "float-model"}], inputs)["smoothquant"]
    assert extra - step_working_set(llama7b, [sq], inputs)["smoothquant"] == inputs


def test_one_pass_gptq_counts_every_paused_forward(llama7b):
    """One pass per block holds every mini-batch's forward paused at a stage: its residual stream and
    the stage layer's input, ``N x S x (2 hidden + intermediate)`` at the MLP output stage."""
    gptq = {"step": "gptq", "bits": 4, "act_order": True}
    two = estimate(llama7b, RunSpec([gptq], True, nsamples=128, seqlen=2048), base=0, rate=1e11)
    one = estimate(llama7b, RunSpec([{**gptq, "passes": "one"}], True, nsamples=128, seqlen=2048), base=0, rate=1e11)
    paused = 128 * 2048 * (2 * 4096 + 11008) * 2
    assert one.parts["forward"] - two.parts["forward"] == paused
    assert one.phases["calibrate"] - two.phases["calibrate"] == paused
    assert one.seconds_parts["calibrate"] < two.seconds_parts["calibrate"]  # one pass per block fewer
