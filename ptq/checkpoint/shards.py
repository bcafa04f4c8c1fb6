"""Write a checkpoint one shard at a time: :class:`ShardWriter`.

A model larger than memory is quantized one decoder block at a time, and each block's packed
tensors go to the output as soon as they exist, so the checkpoint is never whole in memory.
The layout is the one ``transformers`` writes for a large model: ``model-00001-of-000NN.safetensors``
files and ``model.safetensors.index.json`` (``{"metadata": {"total_size": bytes}, "weight_map":
{tensor: file}}``), so :func:`ptq.checkpoint.files.read_tensors`, ``from_pretrained`` and any
safetensors reader load it as they load a sharded float model. Each shard goes through
:func:`~ptq.checkpoint.files.stream_safetensors` (one tensor at a time, no ``bytes`` copy, written
under a temporary name and renamed); the caller writes into the temporary folder of
:func:`~ptq.checkpoint.files.atomic_folder`, so an interrupted run leaves no output behind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptq.checkpoint.config import config_from_module_configs, module_config
from ptq.checkpoint.files import INDEX_NAME, stream_safetensors, unique_tensors, write_metadata


def shard_name(index: int, count: int) -> str:
    """``model-00001-of-00018.safetensors`` (1-based, as ``transformers`` names shards)."""
    return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


class ShardWriter:
    """Shards written in order into ``folder``, then the index and the JSON files.

    Args:
        folder: an existing (temporary) folder.
        count: the number of shards that will be written (a model's decoder blocks plus one for
            the tensors outside them).
    """

    def __init__(self, folder: str | Path, count: int) -> None:
        self.folder, self.count = Path(folder), count
        self.weight_map: dict[str, str] = {}
        self.total_size = 0
        self.written = 0
        self.module_configs: dict[str, dict[str, Any]] = {}

    def write(self, tensors: dict[str, torch.Tensor]) -> str:
        """Write the next shard (aliases dropped, as in a whole-model save) and return its file name."""
        if self.written >= self.count:
            raise ValueError(f"all {self.count} shards are already written")
        name = shard_name(self.written, self.count)
        tensors = unique_tensors(tensors)
        clash = sorted(set(tensors) & set(self.weight_map))
        if clash:
            raise ValueError(f"tensor(s) {clash[:3]} were already written to another shard")
        stream_safetensors(self.folder / name, tensors, metadata={"format": "pt"})
        for key, t in tensors.items():
            self.weight_map[key] = name
            self.total_size += t.numel() * t.element_size()
        self.written += 1
        return name

    def note_modules(self, qmodules: dict[str, nn.Module], methods: dict[str, str | None]) -> None:
        """Keep the configuration of quantized modules already written (the modules may then be freed)."""
        for name, m in qmodules.items():
            self.module_configs[name] = module_config(m, methods.get(name))

    def finish(self, model: nn.Module, modules_in_float: list[str], tokenizer: Any = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the index, ``config.json`` (with the ``quantization_config`` of every noted module),
        the generation config, the tokenizer and ``ptq.json``; returns the ``quantization_config``."""
        if self.written != self.count:
            raise ValueError(f"{self.written} of {self.count} shards written; the checkpoint is incomplete")
        qc = config_from_module_configs(self.module_configs, modules_in_float)
        index = {"metadata": {"total_size": self.total_size}, "weight_map": dict(sorted(self.weight_map.items()))}
        (self.folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        write_metadata(self.folder, model, qc, tokenizer=tokenizer, extra=extra)
        return qc
