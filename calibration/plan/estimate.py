"""Predict a run's peak memory, disk and time from the model's shapes and the recipe alone.

The memory model follows what :func:`calibration.runner.quantize_model` holds at its peak
(the block-by-block loop; DESIGN.md "only one decoder block's working set is live"):

* ``base``: the process before loading (Python, torch, transformers: measured, the RSS now);
* ``weights``: every parameter in the model's dtype (``load_model`` copies them out of the file
  mapping, :mod:`calibration.models.owned`); the input embedding stays mapped and only the rows
  of the calibration tokens are paged in, counted as ``min(vocab, nsamples * seqlen)`` rows;
* ``inputs``: the calibration hidden states of one block, ``nsamples x seqlen x hidden`` in the
  model's dtype (one copy: :func:`~calibration.runner.block_inputs.advance_block` works in place),
  plus the per-batch extra arguments (rotary ``cos`` / ``sin``; an eager attention mask
  ``[B, 1, S, S]``);
* ``forward``: one mini-batch through one block (``B x S x (6 hidden + 3 intermediate)``, plus
  ``B x heads x S x S`` scores for eager attention); GPTQ in one pass per block adds the paused forwards
  of every mini-batch (:mod:`calibration.runner.staged`), each holding its residual stream and the stage
  layer's input, ``nsamples x seqlen x (2 hidden + intermediate)`` at the MLP output stage;
* ``step``: the steps' own working set: GPTQ's largest solve with the Hessians alive then (one ``in x in``
  matrix per linear, in ``hessian_dtype``; :func:`gptq_solve_bytes`); SmoothQuant's float block outputs of every segment
  (``ctx.float_outputs``: another ``inputs``); RTN's float copy of one weight.

After the loop the inputs are freed and the checkpoint is written: ``weights`` plus the packed
tensors plus ``safetensors``' in-memory copy of the file. The reported peak is the larger phase.

Time: a probe multiplies the model's own ``[B*S, hidden] x [hidden, intermediate]`` matmul; a
calibration pass through a block costs ``2 * linear_params + 2 * S * hidden`` FLOPs per token,
and each step is counted in passes (observe + advance) plus GPTQ's ``~2 out in^2 + in^3`` per layer.
It is a rough figure (a factor of two either way), given as such.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from calibration.plan.shapes import ModelShape

MiB = 2**20
WEIGHT_STEPS = ("gptq", "rtn", "awq")
INT8_STEPS = ("w8a8", "llm-int8")


@dataclass
class RunSpec:
    """What the run will do, as the CLI knows it before loading anything."""

    steps: list[dict[str, Any]]
    needs_data: bool
    nsamples: int = 128
    seqlen: int = 512
    batch_size: int = 8
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    output_format: str = "ptq"
    work_folder: bool = True
    stream: bool = False  # blocks read from disk one at a time (calibration.runner.streaming)


@dataclass
class Estimate:
    """Predicted peaks (bytes), disk (bytes) and seconds, with the parts they are made of."""

    host_peak: int
    accel_peak: int | None
    output_bytes: int
    work_bytes: int
    seconds: float
    parts: dict[str, int]
    phases: dict[str, int]
    seconds_parts: dict[str, float]

    @property
    def disk_bytes(self) -> int:
        return self.output_bytes + self.work_bytes

    def to_dict(self) -> dict[str, Any]:
        mib = lambda b: round(b / MiB, 1)  # noqa: E731
        return {"host_peak_mib": mib(self.host_peak), "accelerator_peak_mib": None if self.accel_peak is None
                else mib(self.accel_peak), "output_mib": mib(self.output_bytes), "work_folder_mib": mib(self.work_bytes),
                "seconds": round(self.seconds, 1), "parts_mib": {k: mib(v) for k, v in self.parts.items()},
                "phases_mib": {k: mib(v) for k, v in self.phases.items()},
                "seconds_parts": {k: round(v, 1) for k, v in self.seconds_parts.items()}}


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty(0, dtype=dtype).element_size()


def weight_format(steps: list[dict[str, Any]]) -> tuple[int | None, int | None, bool]:
    """``(bits, group_size, act_order)`` of the recipe's last weight step (``None`` bits: float)."""
    bits = group = None
    act_order = False
    for s in steps:
        if s.get("step") in INT8_STEPS:
            bits, group, act_order = 8, None, False
        elif s.get("step") in WEIGHT_STEPS or "bits" in s:
            bits, act_order = int(s.get("bits", 4)), bool(s.get("act_order", False))
            group = s.get("group_size") if s.get("granularity", "group" if s.get("group_size") else "channel") == "group" else None
    return bits, group, act_order


def output_bytes(shape: ModelShape, steps: list[dict[str, Any]], output_format: str = "ptq") -> int:
    """Bytes of the checkpoint: packed codes and qparams of the block linears, the rest in the dtype."""
    item = _itemsize(shape.dtype)
    float_rest = (shape.num_blocks * (shape.block_params - shape.block_linear_params) + shape.embed_params
                  + shape.other_params) * item
    bits, group, act_order = weight_format(steps)
    if bits is None or output_format == "float":
        return shape.params * item
    per_block = 0
    for out_f, in_f in shape.linears.values():
        groups = in_f // group if group else 1
        per_block += out_f * in_f * bits // 8 + out_f * groups * (2 + 4) + (in_f * 4 if act_order else 0)
    return float_rest + shape.num_blocks * per_block


def step_working_set(shape: ModelShape, steps: list[dict[str, Any]], inputs: int) -> dict[str, int]:
    """The largest working set of each step on one block (bytes), beyond the block inputs."""
    out = {}
    biggest = max(shape.linears.values(), key=lambda oi: oi[0] * oi[1])
    widest = max(i for _, i in shape.linears.values())
    for s in steps:
        name = s.get("step")
        if name == "gptq":
            hbytes = 8 if s.get("hessian_dtype") == "float64" else 4
            out[name] = gptq_solve_bytes(shape, hbytes)
        elif name == "smoothquant":  # auto: the float outputs for the search; float-model: the next block's inputs
            out[name] = ((inputs if s.get("alpha") == "auto" else widest * 8 * len(shape.linears))
                         + (inputs if s.get("statistics") == "float-model" else 0))
        elif name in ("rtn", "awq"):
            out[name] = 2 * biggest[0] * biggest[1] * 4
        else:
            out[str(name)] = sum(i for _, i in shape.linears.values()) * 16
    return out


def gptq_solve_bytes(shape: ModelShape, hbytes: int = 4) -> int:
    """GPTQ's largest solve (:func:`ptq.algorithms.gptq.gptq`): the first layer's, while every Hessian of the
    block is alive (shared inputs counted once per layer: an upper bound), plus its copy, its inverse and
    the factor; or the widest layer's (the last reader of its Hessian, which the solve overwrites): the
    Hessian, the inverse and the factor. Each with the weight's copy, its transpose and the codes in float32.
    That is one ``in x in`` matrix more than the solver now holds at once (it factorises in place); the spare
    one stays because a streamed run's resident set grows by about as much over its first blocks (allocator
    growth, modelled nowhere else; measured in docs/results.md, "A model larger than memory")."""
    layers = list(shape.linears.values())
    hessians = sum(i * i for _, i in layers) * hbytes
    first_out, first_in = layers[0]
    wide_out, wide_in = max(layers, key=lambda oi: oi[1])
    first = hessians + 3 * first_in * first_in * hbytes + 3 * first_out * first_in * 4
    widest = 3 * wide_in * wide_in * hbytes + 3 * wide_out * wide_in * 4
    return max(first, widest)


def observe_bytes(shape: ModelShape, steps: list[dict[str, Any]]) -> int:
    """What the steps accumulate during a block's observing passes: GPTQ's Hessians, one per linear."""
    return sum(sum(i * i for _, i in shape.linears.values()) * (8 if s.get("hessian_dtype") == "float64" else 4)
               for s in steps if s.get("step") == "gptq")


def passes_per_block(steps: list[dict[str, Any]], nsamples: int) -> float:
    """Full forward passes over the calibration data per block (observe passes, searches, the advance; no
    advance after a step that already has the next block's inputs: SmoothQuant's float-model statistics pass,
    a last GPTQ step in one pass)."""
    passes = 0.0
    data = False
    advance = True
    for s in steps:
        name = s.get("step")
        if name == "rtn":
            continue
        if name in INT8_STEPS and s.get("mode", s.get("act", "")) not in ("static",):
            continue
        data = True
        passes += 1
        if name == "smoothquant" and s.get("alpha") == "auto":
            share = min(1.0, (s.get("search_samples", 16) or nsamples) / nsamples)
            passes += 1 + 11 * share  # the float outputs, then each candidate alpha on the search segments
        if name == "smoothquant" and s.get("statistics") == "float-model":
            advance = False
        if name == "gptq" and s.get("passes") == "one":
            advance = advance and s is not steps[-1]
        elif name == "gptq" and s.get("true_sequential"):
            passes += 3
    return passes + (1 if data and advance else 0)


def estimate(shape: ModelShape, run: RunSpec, base: int, rate: float) -> Estimate:
    """The :class:`Estimate` of ``run`` on ``shape``; ``base`` is the process's resident bytes before
    loading and ``rate`` the measured FLOP/s of the model's matmul shape."""
    item = _itemsize(shape.dtype)
    N, S, B = (run.nsamples, run.seqlen, min(run.batch_size, run.nsamples)) if run.needs_data else (0, 0, 0)
    intermediate = max(max(o, i) for o, i in shape.linears.values())
    owned = (shape.num_blocks * shape.block_params + shape.other_params) * item
    row = shape.embed_params // max(shape.vocab, 1) * item
    embed = min(shape.vocab, N * S) * row if N else shape.embed_params * item  # rows paged in by calibration
    inputs = N * S * shape.hidden * item
    extras = N * S * 2 * shape.head_dim * item + (N * S * S * item if shape.attn_implementation == "eager" else 0)
    forward = B * S * (6 * shape.hidden + 3 * intermediate) * item
    if shape.attn_implementation == "eager":
        forward += 2 * B * shape.heads * S * S * item
    if any(s.get("step") == "gptq" and s.get("passes") == "one" for s in run.steps):
        forward += N * S * (2 * shape.hidden + intermediate) * item  # every mini-batch's paused forward
    steps = step_working_set(shape, run.steps, inputs)
    step_peak = max(steps.values(), default=0)
    out_bytes = output_bytes(shape, run.steps, run.output_format)
    on_accel = run.device.type != "cpu"
    parts = {"base": base, "weights": owned, "embedding": embed, "inputs": inputs + extras, "forward": forward,
             "step": step_peak}
    if run.stream:
        return _streamed(shape, run, base, rate, parts, embed, inputs + extras, forward, step_peak, out_bytes, on_accel)
    if on_accel:  # the whole model, its inputs and the block work live on the device; the host only loads
        accel = owned + shape.embed_params * item + inputs + extras + forward + step_peak
        phases = {"load": base + owned + shape.embed_params * item, "save": base + owned + 2 * out_bytes}
    else:
        accel = None
        phases = {"calibrate": base + owned + embed + inputs + extras + forward + step_peak,
                  "save": base + owned + embed + 2 * out_bytes}
    work = (shape.num_blocks * shape.block_params * item + 2 * inputs) if run.work_folder and run.needs_data else 0
    flops_token = 2 * shape.block_linear_params + 2 * S * shape.hidden
    seconds = {"calibrate": N * S * shape.num_blocks * flops_token * passes_per_block(run.steps, max(N, 1)) / rate,
               "load": (owned + shape.embed_params * item) / 1e9}
    if any(s.get("step") == "gptq" for s in run.steps):
        solve = sum(2 * o * i * i + i**3 for o, i in shape.linears.values())
        seconds["gptq_solve"] = shape.num_blocks * solve / rate
    return Estimate(host_peak=max(phases.values()), accel_peak=accel, output_bytes=out_bytes, work_bytes=work,
                    seconds=sum(seconds.values()), parts=parts, phases=phases, seconds_parts=seconds)


def _streamed(shape: ModelShape, run: RunSpec, base: int, rate: float, parts: dict[str, int], embed: int, inputs: int,
              forward: int, step_peak: int, out_bytes: int, on_accel: bool) -> Estimate:
    """:func:`estimate` of a model streamed from disk (:mod:`calibration.runner.streaming`): one block's
    float weights instead of all of them (read onto the compute device, back on the host to be packed),
    the embedding's calibration rows (mapped), the norms; never the untied output head while calibrating.
    The block phase holds the block, the inputs and the larger of (one forward + the step's working set)
    and (the block's packed tensors, made after the step's working set is freed). The last phase writes
    the tensors outside the blocks: the whole embedding table is read through its mapping, the head and
    norms in the dtype. The block phase's work is the largest of its three moments: an observing pass
    (one forward and the statistics it feeds), a step's solve, the packing."""
    item = _itemsize(shape.dtype)
    block = shape.block_params * item
    head = shape.lm_head_params * item if not shape.tied else 0
    small = shape.other_params * item - head  # final norm, position tables
    packed_block = (out_bytes - (shape.embed_params + shape.other_params) * item) // max(shape.num_blocks, 1)
    parts = {**parts, "weights": block + small}
    if on_accel:
        accel = block + embed + inputs + forward + step_peak
        phases = {"calibrate": base + embed + small + block + packed_block}
    else:
        accel = None
        during = max(forward + observe_bytes(shape, run.steps), step_peak, packed_block)  # passes, solves, packing
        phases = {"calibrate": base + embed + small + block + inputs + during}
    phases["save"] = base + (shape.embed_params + shape.other_params) * item
    flops_token = 2 * shape.block_linear_params + 2 * run.seqlen * shape.hidden
    N, S = (run.nsamples, run.seqlen) if run.needs_data else (0, 0)
    seconds = {"calibrate": N * S * shape.num_blocks * flops_token * passes_per_block(run.steps, max(N, 1)) / rate,
               "load": (shape.num_blocks * block + (shape.embed_params + shape.other_params) * item) / 1e9}
    if any(s.get("step") == "gptq" for s in run.steps):
        seconds["gptq_solve"] = shape.num_blocks * sum(2 * o * i * i + i**3 for o, i in shape.linears.values()) / rate
    return Estimate(host_peak=max(phases.values()), accel_peak=accel, output_bytes=out_bytes, work_bytes=0,
                    seconds=sum(seconds.values()), parts=parts, phases=phases, seconds_parts=seconds)


def estimate_eval(shape: ModelShape, seqlen: int, windows: int, base: int, rate: float,
                  device: torch.device | None = None, stream: bool = False) -> Estimate:
    """Perplexity of ``windows`` windows of ``seqlen`` (one window per forward): the weights (a
    quantized checkpoint: its file size), float32 logits ``[S, vocab]`` twice (log-softmax), one
    block's forward. ``stream`` (:mod:`evaluations.streamed`): one block's weights (its share of the
    file) plus the tensors outside the blocks, and every window's hidden states ``[S + 1, hidden]``."""
    item = _itemsize(shape.dtype)
    weights = shape.quantized_bytes or shape.params * item
    if stream:
        outside = (shape.embed_params + shape.other_params) * item
        weights = outside + max(weights - outside, 0) // max(shape.num_blocks, 1)
        weights += windows * (seqlen + 1) * shape.hidden * item
    logits = 2 * seqlen * shape.vocab * 4
    intermediate = max(max(o, i) for o, i in shape.linears.values())
    forward = seqlen * (6 * shape.hidden + 3 * intermediate) * item
    if shape.attn_implementation == "eager":
        forward += 2 * shape.heads * seqlen * seqlen * item
    on_accel = device is not None and device.type != "cpu"
    parts = {"base": base, "weights": weights, "logits": logits, "forward": forward}
    host = base + weights + (0 if on_accel else logits + forward)
    flops = windows * seqlen * (shape.num_blocks * (2 * shape.block_linear_params + 2 * seqlen * shape.hidden)
                                + 2 * shape.lm_head_params)
    return Estimate(host_peak=host, accel_peak=weights + logits + forward if on_accel else None, output_bytes=0,
                    work_bytes=0, seconds=flops / rate, parts=parts, phases={"evaluate": host},
                    seconds_parts={"evaluate": flops / rate})
