"""Logits of a model larger than memory: every evaluation window through one decoder block at a time
(:func:`streamed_window_logits`, the same items as :func:`evaluations.windows.window_logits`).

Two ways to run a model whose blocks are read from disk: window by window, loading every block for
each window, or block by block, holding every window's hidden states. The first reads the whole
model from disk once per window (40 windows of a 7B float32 model: 40 x 27 GB read, and the page
cache cannot hold a model that does not fit in memory); the second reads it once, and holds
``windows x (seqlen + 1) x hidden`` activations (40 x 513 x 4096 float32: 336 MB), far less than one
block of such a model. So the blocks go in the outer loop, as in the calibration runner: the inputs
of block 0 are caught for all windows (:func:`~calibration.runner.block_inputs.catch_block_inputs`),
each block is loaded, advances every window's hidden states in place and is freed. The model's own
tail (final norm, head) then runs on the last hidden states, one window at a time: the blocks in the
model are swapped for modules that pass their input through, the last one returning the saved
hidden states, so the tail is whatever the architecture's forward does after its blocks.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn

from calibration.models.streaming import StreamedModel
from calibration.runner.block_inputs import advance_block, catch_block_inputs
from calibration.runner.memory import release_memory
from evaluations.windows import WindowPlan, scored_rows, window_batch


class _PassThrough(nn.Module):
    """Stands in for a decoder block: returns its input hidden states (or ``replay`` when set), in the
    block's own return type (a tensor, or a 1-tuple in older architectures)."""

    def __init__(self, like: nn.Module, as_tuple: bool) -> None:
        super().__init__()
        self.as_tuple = as_tuple
        self.replay: torch.Tensor | None = None
        if hasattr(like, "attention_type"):  # some models pick each layer's mask by this attribute
            self.attention_type = like.attention_type

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = hidden if self.replay is None else self.replay
        return (out,) if self.as_tuple else out


@torch.inference_mode()
def streamed_window_logits(streamed: StreamedModel, ids: torch.Tensor, plan: WindowPlan, batch_size: int = 8,
                           device: str | torch.device = "cpu", progress: bool = False
                           ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(window index, logits [scored, V], targets [scored])`` of every window of ``plan``, in order,
    reading each block of ``streamed`` once (module docstring). ``streamed`` must have its resident
    tensors loaded (:meth:`~calibration.models.streaming.StreamedModel.load_resident`)."""
    ids = ids.reshape(-1)
    device = torch.device(device)
    model, blocks = streamed.model, streamed.blocks
    rows = window_batch(ids, plan.spans, plan)
    streamed_to(streamed, device)
    inputs = catch_block_inputs(model, blocks[0], rows, batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(blocks), desc="blocks", unit="block", leave=False)
    kinds: list[bool] = []  # whether a block returns a tuple (older architectures) or the hidden states
    for index in range(len(blocks)):
        block = streamed.load_block(index, device)
        hook = block.register_forward_hook(lambda m, a, out: kinds.append(isinstance(out, (tuple, list))))
        try:
            inputs = advance_block(block, inputs)
        finally:
            hook.remove()
        streamed.release_block(index)
        release_memory()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    hidden = inputs.hidden  # mini-batches of batch_size windows, in order
    real = [blocks[i] for i in range(len(blocks))]
    stand_ins = [_PassThrough(b, bool(kinds and kinds[0])) for b in real]
    try:
        for i in range(len(blocks)):
            blocks[i] = stand_ins[i]
        for w, (begin, first) in enumerate(plan.spans):
            stand_ins[-1].replay = hidden[w // batch_size][w % batch_size:w % batch_size + 1]
            logits = model(input_ids=rows[w:w + 1].to(device), use_cache=False).logits
            yield w, logits[0, scored_rows(begin, first, plan)], ids[first:begin + plan.seqlen].to(device)
            del logits
    finally:
        for i, b in enumerate(real):
            blocks[i] = b
        stand_ins[-1].replay = None


def streamed_to(streamed: StreamedModel, device: torch.device) -> None:
    """Move what lives outside the blocks to ``device`` (the blocks are loaded onto it one at a time)."""
    from calibration.runner.streaming import move_outside_blocks

    if device.type != "cpu":
        move_outside_blocks(streamed.model, device, streamed.blocks)
