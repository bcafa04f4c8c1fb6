"""The block-by-block calibration runner.

1. Catch the inputs of decoder block 0 for every calibration segment (hidden states and
   every other argument the block needs).
2. For each block in order: each recipe step processes it (observes its layers' inputs
   through hooks, computes quantization parameters, replaces weights); then the quantized
   block is re-run so that its outputs are the next block's inputs, as in the GPTQ
   reference's sequential loop (unless a step already has them: a one-pass step's quantized
   outputs, or the float outputs a step computing statistics on the float model kept).
3. Each step finalizes.

Only one block's working set is live at a time: the previous block's inputs are dropped as
soon as its outputs exist, so peak memory does not grow with depth.
"""
from __future__ import annotations

import gc
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from calibration import distributed
from calibration.models.blocks import find_decoder_blocks
from calibration.runner.block_inputs import (BlockInputs, advance_block, autocast_dtype, catch_block_inputs,
                                             native_cpu_dtype)
from calibration.runner.context import BlockContext, LayerRecord
from calibration.runner.memory import peak_rss_mb, release_memory
from calibration.runner.streaming import BlockLoader
from calibration.runner.workdir import WorkFolder
from ptq.errors import PTQUserError

if TYPE_CHECKING:
    from calibration.recipes.recipe import Recipe


@dataclass
class QuantizationResult:
    """The outcome of :func:`quantize_model` (the model itself is changed in place)."""

    records: dict[str, LayerRecord] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    autocast: str | None = None
    resumed_at: int = 0  # the block a resumed run started at (0: a whole run)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "layers": {name: rec.to_json() for name, rec in self.records.items()},
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            **({"autocast": self.autocast} if self.autocast else {}),
            **({"resumed_at_block": self.resumed_at} if self.resumed_at else {}),
        }


def quantize_model(
    model: nn.Module,
    recipe: "Recipe",
    segments: torch.Tensor | None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool = True,
    autocast: str | None = None,
    work: WorkFolder | None = None,
    loader: BlockLoader | None = None,
) -> QuantizationResult:
    """Apply ``recipe`` to ``model`` block by block, in place.

    Under ``torchrun`` (:mod:`calibration.distributed`) each rank calibrates on its contiguous share of
    ``segments`` and every statistic is reduced over the ranks before a step uses it, so that every
    rank ends with the same quantized model.

    Args:
        model: a decoder-only ``transformers`` causal LM.
        recipe: the ordered steps.
        segments: calibration token ids ``[nsamples, seqlen]`` (may be ``None`` when no step
            needs calibration data, e.g. weight-only min-max RTN).
        batch_size: segments per forward call.
        device: where each block is processed; default the model's device. A model kept on
            the CPU is processed on a GPU one block at a time.
        progress: tqdm bar on stderr.
        autocast: ``"bfloat16"`` / ``"float16"`` runs every calibration forward pass of the
            blocks under ``torch.autocast`` (matmuls in that dtype, about 2x faster on CPUs with
            AVX-512 BF16; what the GPTQ reference does by running the model in float16 on a
            GPU). Weights stay in their dtype, so every step's solve (GPTQ's column loop,
            SmoothQuant's scales) and the quantized weights are unchanged; only the activations
            the statistics are computed from carry the lower precision. ``None`` (default): the
            model's own dtype.
        work: a :class:`~calibration.runner.workdir.WorkFolder` that keeps every finished block
            (and the next one's inputs), so that a killed run resumes at the block it was on and
            gives the same result bit for bit; its ``after_block`` hook is the safe point where a
            run may stop (:class:`~calibration.runner.workdir.RunInterrupted`). ``None``: nothing
            is kept.
        loader: a model whose blocks are on ``meta`` until needed (a model larger than memory,
            :mod:`calibration.runner.streaming`): it loads each block before its steps and takes it
            back (writes and frees it) once the block's outputs exist. Cannot resume (``work``).
    """
    amp = autocast_dtype(autocast)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if recipe.needs_calibration_data and segments is None:
        raise ValueError(f"recipe {recipe.describe()} needs calibration segments")
    if loader is not None and work is not None:
        raise ValueError("a streamed model (loader) cannot be resumed from a work folder")
    if distributed.active():  # data-parallel: this rank's share of the segments; statistics are reduced
        if work is not None:
            raise ValueError("a work folder (resume) cannot be kept by a data-parallel run")
        segments = None if segments is None else distributed.split_rows(segments, "calibration segments")
        progress = progress and distributed.is_main()
    home = next(model.parameters()).device if loader is None else torch.device("cpu")  # a streamed model lives on disk
    device = torch.device(device) if device is not None else home
    prefix, blocks = find_decoder_blocks(model)
    if amp is not None and device.type == "cpu" and not native_cpu_dtype(amp):
        warnings.warn(f"autocast {autocast}: this CPU has no native {autocast} matmul (AVX-512 BF16 / FP16 or "
                      "AMX), so the calibration passes will be slower than in float32; drop --autocast here",
                      RuntimeWarning, stacklevel=2)
    result = QuantizationResult(autocast=autocast)
    release_memory()  # what loading and tokenizing freed goes back before the activations arrive
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    for step in recipe.steps:
        step.initialize(model)
    start = work.resume_point(len(blocks), recipe.steps) if work is not None else 0
    if start:
        for index in range(start):
            work.restore_block(index, blocks[index], f"{prefix}.{index}", result.records)
        work.restore_steps(recipe.steps)
        result.resumed_at = start

    inputs = BlockInputs()
    if recipe.needs_calibration_data and start < len(blocks):
        move = model.to if loader is None else (lambda d: loader.move_resident(model, d))
        if device != home:
            move(device)  # catching needs embeddings on the device; blocks move back below
        inputs = catch_block_inputs(model, blocks[0], segments, batch_size)
        if device != home:
            move(home)
        inputs = inputs.to(device)
        if start:
            inputs = work.restore_inputs(inputs)
    result.timings["catch_inputs"] = time.perf_counter() - t0

    bar = tqdm(total=len(blocks), desc="quantize", unit="block", disable=not progress, leave=False)
    bar.update(start)
    for index, block in enumerate(blocks):
        if index < start:
            continue
        if loader is not None:
            loader.load(index, block, device)
        block.to(device)
        check_finite_weights(block, f"{prefix}.{index}")
        ctx = BlockContext(block=block, index=index, prefix=f"{prefix}.{index}", inputs=inputs, records=result.records,
                           autocast=amp)
        for step in recipe.steps:
            ctx.advanced = False  # only the last step's in-place outputs stand for the re-run
            step.process_block(ctx)
        if recipe.needs_calibration_data and index + 1 < len(blocks):
            if ctx.next_hidden is not None:  # a step kept the float block's outputs: no re-run
                inputs = inputs.with_hidden(ctx.next_hidden)
            elif not ctx.advanced:
                inputs = advance_block(block, inputs, amp)
        del ctx
        block.to(home)
        if work is not None:
            work.save(index, block, f"{prefix}.{index}", result.records, recipe.steps,
                      inputs if recipe.needs_calibration_data and index + 1 < len(blocks) else None, len(blocks))
        if loader is not None:
            loader.unload(index, block, result.records)
            release_memory()  # a streamed model: the unloaded block's pages go back now
        else:  # the next block's activations reuse these heap pages: handing them back to the OS
            gc.collect()  # would make it page-fault them in again (about 1 GB per block in one-pass GPTQ)
        bar.set_postfix_str(f"block {index + 1}/{len(blocks)}")
        bar.update(1)
    bar.close()
    del inputs
    release_memory()

    for step in recipe.steps:
        result.steps.append({**step.to_dict(), **step.finalize(model)})
    model.train(was_training)
    result.timings["quantize"] = time.perf_counter() - t0
    result.peak_rss_mb = peak_rss_mb()
    return result



def check_finite_weights(block: nn.Module, prefix: str) -> None:
    """``ValueError`` naming the first floating-point parameter of ``block`` that holds NaN or inf."""
    for name, p in block.named_parameters():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise PTQUserError(f"weight {prefix}.{name} contains NaN or inf: the model's weights are damaged "
                             "(a corrupt file or a diverged training run); nothing can be quantized from them")
