"""Save a quantized model as a ptq checkpoint: packed safetensors + ``quantization_config``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ptq.checkpoint.config import build_quantization_config
from ptq.checkpoint.files import atomic_folder, write_checkpoint
from ptq.layers import is_linear
from ptq.modules.swap import is_qmodule, quantized_modules


def float_state(model: nn.Module, qmodules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The model's state dict without the tensors of the layers in ``qmodules`` (no copies)."""
    prefixes = tuple(f"{name}." for name in qmodules)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}


def float_linears(model: nn.Module, qmodules: Mapping[str, nn.Module]) -> list[str]:
    """Linear layers (``nn.Linear`` / ``Conv1D``) that stay in float (e.g. ``lm_head``)."""
    inside = tuple(f"{name}." for name in qmodules)
    return [n for n, m in model.named_modules()
            if n and is_linear(m) and not is_qmodule(m) and n not in qmodules and not n.startswith(inside)]


def save_quantized(
    model: nn.Module,
    directory: str | Path,
    records: Mapping[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    tokenizer: Any = None,
    scale_dtype: str | torch.dtype = "auto",
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``directory`` with its quantized layers packed.

    Args:
        model: a ``transformers`` model after quantization: its fake-quantized layers are
            packed from ``records`` (the model is not modified), layers already swapped for
            quantized modules (:func:`ptq.modules.quantize_modules`, a loaded checkpoint) are
            stored as they are, everything else (embeddings, norms, ``lm_head``) in float.
        directory: the checkpoint folder (written to a temporary sibling, renamed at the end).
        records: qualified layer name -> record with ``method``, ``spec``, ``scale``, ``zero``
            and ``g_idx`` (``calibration.runner.LayerRecord``).
        extra: written as ``ptq.json`` (the quantization report).
        tokenizer: saved alongside when given.
        scale_dtype: ``"auto"`` (float16 when lossless, else float32), ``"float16"`` or ``"float32"``.
        overwrite: replace an existing ``directory``.

    Returns the folder. Files: ``model.safetensors``, ``config.json`` with a
    ``quantization_config`` (:mod:`ptq.checkpoint.config`), tokenizer files, ``ptq.json``.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    qmodules = quantized_modules(model, records, scale_dtype=scale_dtype)
    methods = {name: getattr((records or {}).get(name), "method", None) for name in qmodules}
    qc = build_quantization_config(qmodules, methods, float_linears(model, qmodules))
    tensors = float_state(model, qmodules)
    for name, qm in qmodules.items():
        tensors.update({f"{name}.{k}": v for k, v in qm.state_dict().items()})
    with atomic_folder(directory, overwrite=overwrite) as tmp:
        write_checkpoint(tmp, tensors, model, qc, tokenizer=tokenizer, extra=extra)
    return directory
