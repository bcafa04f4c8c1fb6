"""The runner's per-block hooks for a model streamed from disk: :class:`BlockLoader` (what the runner
calls) and :class:`StreamingQuantizer` (load a block from the shards, and once its steps are done
write its packed tensors to the output and free it).

With a loader, :func:`calibration.runner.quantize_model` holds one decoder block's weights at a
time: block ``k`` is read from disk right before its steps run (onto the compute device: on a GPU
only one block is ever there), and after its outputs are computed the loader packs it exactly as
:func:`ptq.checkpoint.save.save_quantized` packs a whole model (the same records, the same
``quantized_modules``), writes the packed tensors as one shard of the output, and sets the block
back to ``meta``. The tensors outside the blocks are written last, read again from the source
(the untied output head is never needed while calibrating).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from calibration.models.streaming import StreamedModel
from calibration.runner.context import LayerRecord
from ptq.checkpoint.save import float_linears, float_state
from ptq.checkpoint.shards import ShardWriter
from ptq.modules.swap import quantized_modules


class BlockLoader(Protocol):
    """What the runner asks of a model whose blocks are not all in memory."""

    def move_resident(self, model: nn.Module, device: torch.device) -> None:
        """Move what lives outside the blocks (embedding, norms, rotary buffers) to ``device``."""

    def load(self, index: int, block: nn.Module, device: torch.device) -> None:
        """Make block ``index``'s weights real, on ``device``."""

    def unload(self, index: int, block: nn.Module, records: dict[str, LayerRecord]) -> None:
        """Block ``index`` is finished (its steps ran, its outputs are the next inputs): keep what must
        be kept of it and free it."""


def move_outside_blocks(model: nn.Module, device: torch.device, block_list: nn.ModuleList) -> None:
    """``model.to(device)`` for every module but the decoder blocks (on ``meta`` until loaded)."""
    inside = {id(m) for m in block_list.modules()}
    for module in model.modules():
        if id(module) in inside:
            continue
        for key, p in module._parameters.items():
            if p is not None and not p.is_meta:
                module._parameters[key] = nn.Parameter(p.data.to(device), requires_grad=p.requires_grad)
        for key, b in module._buffers.items():
            if b is not None and not b.is_meta:
                module._buffers[key] = b.to(device)


class StreamingQuantizer:
    """A :class:`BlockLoader` that writes the quantized model shard by shard into ``folder``.

    Args:
        streamed: the model on ``meta`` with its resident tensors loaded (``load_resident(head=False)``).
        folder: the (temporary) output folder.
        scale_dtype: as :func:`ptq.checkpoint.save.save_quantized`.
    """

    def __init__(self, streamed: StreamedModel, folder: str | Path, scale_dtype: str | torch.dtype = "auto") -> None:
        self.streamed, self.scale_dtype = streamed, scale_dtype
        self.writer = ShardWriter(folder, len(streamed.blocks) + 1)
        self.block_bytes = 0  # the largest block read, in bytes (for the report)

    def move_resident(self, model: nn.Module, device: torch.device) -> None:
        if device.type == "cpu":  # back from the accelerator: read again, the embedding mapped (not a copy)
            self.streamed.load_resident("cpu", head=False)
        else:
            move_outside_blocks(model, device, self.streamed.blocks)

    def load(self, index: int, block: nn.Module, device: torch.device) -> None:
        self.streamed.load_block(index, device)
        self.block_bytes = max(self.block_bytes, sum(t.numel() * t.element_size() for t in block.state_dict().values()))

    def unload(self, index: int, block: nn.Module, records: dict[str, LayerRecord]) -> None:
        prefix = self.streamed.block_prefix(index)
        mine = {q[len(prefix) + 1:]: r for q, r in records.items() if q.startswith(f"{prefix}.")}
        qmodules = quantized_modules(block, mine, scale_dtype=self.scale_dtype)
        tensors = {f"{prefix}.{k}": v for k, v in float_state(block, qmodules).items()}
        for name, qm in qmodules.items():
            tensors.update({f"{prefix}.{name}.{k}": v for k, v in qm.state_dict().items()})
        self.writer.write(tensors)
        self.writer.note_modules({f"{prefix}.{n}": m for n, m in qmodules.items()},
                                 {f"{prefix}.{n}": getattr(r, "method", None) for n, r in mine.items()})
        del tensors, qmodules
        self.streamed.release_block(index)

    def finish(self, tokenizer: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the tensors outside the blocks (read again from the source), the index and the JSON files."""
        streamed = self.streamed
        model = streamed.model
        streamed.load_resident("cpu", head=True)
        p = f"{streamed.prefix}."
        outside = {k: v for k, v in model.state_dict().items() if not k.startswith(p)}
        self.writer.write(outside)
        del outside
        streamed.release_head()
        in_float = float_linears(model, self.writer.module_configs)
        return self.writer.finish(model, in_float, tokenizer=tokenizer, extra=extra)
