"""Find the repeated decoder blocks of any decoder-only model, and their linear layers.

Rather than hard-coding ``model.model.layers`` (Llama), ``model.model.decoder.layers``
(OPT) or ``model.transformer.h`` (GPT-2), the decoder blocks are the largest
``nn.ModuleList`` whose children all have the same class. Linear layers are ``nn.Linear``
and ``transformers``' ``Conv1D`` (GPT-2), whose weight is stored transposed.
"""
from __future__ import annotations

import torch
from torch import nn

try:  # transformers keeps Conv1D in pytorch_utils
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()  # type: ignore[assignment]

LINEAR_TYPES: tuple[type, ...] = (nn.Linear,) + ((Conv1D,) if isinstance(Conv1D, type) else ())


def find_decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Qualified name and module of the decoder-block list (largest homogeneous ModuleList)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            kinds = {type(child) for child in module}
            if len(kinds) == 1 and any(True for _ in module[0].parameters()):
                if best is None or len(module) > len(best[1]):
                    best = (name, module)
    if best is None:
        raise ValueError(
            f"could not find the decoder blocks of {type(model).__name__}: no nn.ModuleList of "
            "repeated blocks; is this a decoder-only transformers model?"
        )
    return best


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, LINEAR_TYPES)


def find_linear_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Linear sub-layers of ``module`` by qualified name, in definition order."""
    return {name: m for name, m in module.named_modules() if name and is_linear(m)}


def linear_weight(layer: nn.Module) -> torch.Tensor:
    """The weight as ``[out_features, in_features]`` (``Conv1D`` stores it transposed)."""
    w = layer.weight.data
    return w.t() if not isinstance(layer, nn.Linear) else w


def set_linear_weight(layer: nn.Module, w: torch.Tensor) -> None:
    """Write a ``[out_features, in_features]`` weight back into ``layer`` in its own layout and dtype."""
    target = layer.weight.data
    new = w.t() if not isinstance(layer, nn.Linear) else w
    target.copy_(new.to(target.dtype))
