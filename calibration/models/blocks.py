"""Find the repeated decoder blocks of any decoder-only model, and their linear layers.

Rather than hard-coding ``model.model.layers`` (Llama), ``model.model.decoder.layers``
(OPT) or ``model.transformer.h`` (GPT-2), the decoder blocks are the largest
``nn.ModuleList`` whose children all have the same class. Linear layers are ``nn.Linear``
and ``transformers``' ``Conv1D`` (GPT-2), whose weight is stored transposed; those helpers live in :mod:`ptq.layers`.
"""
from __future__ import annotations

from torch import nn

from ptq.errors import PTQUserError
from ptq.layers import LINEAR_TYPES, find_linear_layers, is_linear, linear_weight, set_linear_weight

__all__ = ["LINEAR_TYPES", "find_decoder_blocks", "find_linear_layers", "is_linear", "linear_weight",
           "set_linear_weight"]


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
        raise PTQUserError(
            f"could not find the decoder blocks of {type(model).__name__}: no nn.ModuleList of "
            "repeated blocks; is this a decoder-only transformers model?"
        )
    return best
