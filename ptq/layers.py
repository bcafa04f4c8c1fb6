"""Layer plumbing shared by every layer of the package: which modules are linear layers, their
weight as a 2-D ``[out_features, in_features]`` view, their sizes, the float class a quantized
module goes back to, and dtype names.

Linear layers are ``nn.Linear`` and ``transformers``' ``Conv1D`` (GPT-2), which stores its weight
transposed (``[in_features, out_features]``) and computes ``y = x W + b``.
"""
from __future__ import annotations

import torch
from torch import nn

from ptq.errors import PTQUserError

try:  # transformers keeps Conv1D in pytorch_utils
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = None  # type: ignore[assignment,misc]

LINEAR_TYPES: tuple[type, ...] = (nn.Linear,) + ((Conv1D,) if Conv1D is not None else ())
FLOAT_CLASSES = ("Linear", "Conv1D")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                                  "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def is_linear(module: nn.Module) -> bool:
    """True for ``nn.Linear`` and ``Conv1D`` (not for quantized replacements)."""
    return isinstance(module, LINEAR_TYPES)


def is_conv1d(module: nn.Module) -> bool:
    """True for ``transformers``' ``Conv1D`` (weight stored ``[in, out]``)."""
    return Conv1D is not None and isinstance(module, Conv1D)


def find_linear_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Linear sub-layers of ``module`` by qualified name, in definition order."""
    return {name: m for name, m in module.named_modules() if name and is_linear(m)}


def weight_2d(module: nn.Module) -> torch.Tensor:
    """The weight as ``[out_features, in_features]``: a view of the parameter (``Conv1D``: transposed)."""
    w = module.weight
    return w.t() if is_conv1d(module) else w


def linear_weight(layer: nn.Module) -> torch.Tensor:
    """:func:`weight_2d` of the parameter's data (no autograd): what the algorithms read and write in place."""
    w = layer.weight.data
    return w.t() if is_conv1d(layer) else w


def set_linear_weight(layer: nn.Module, w: torch.Tensor) -> None:
    """Write a ``[out_features, in_features]`` weight back into ``layer`` in its own layout and dtype."""
    target = linear_weight(layer)
    target.copy_(w.to(target.dtype))


def in_out_features(module: nn.Module) -> tuple[int, int]:
    """``(in_features, out_features)`` of a linear layer, read off its weight."""
    out_features, in_features = weight_2d(module).shape
    return int(in_features), int(out_features)


def float_class(module: nn.Module) -> str:
    """The name of the float class a quantized replacement of ``module`` goes back to."""
    return "Conv1D" if is_conv1d(module) else "Linear"


def check_float_class(name: str) -> str:
    if name not in FLOAT_CLASSES:
        raise ValueError(f"float_class must be 'Linear' or 'Conv1D', got {name!r}")
    return name


def float_linear(W: torch.Tensor, bias: torch.Tensor | None, float_class: str = "Linear",
                 dtype: torch.dtype | None = None) -> nn.Module:
    """An ``nn.Linear`` (or ``Conv1D``) holding the ``[out, in]`` weight ``W`` and ``bias``, in
    ``dtype`` (default: the bias's dtype, else float32): what quantized modules' ``to_float`` return."""
    dtype = dtype or (bias.dtype if bias is not None else torch.float32)
    W = W.to(dtype)
    out_features, in_features = W.shape
    if float_class == "Conv1D":
        assert Conv1D is not None
        m: nn.Module = Conv1D(out_features, in_features)
        m.weight = nn.Parameter(W.t().contiguous(), requires_grad=False)
    else:
        m = nn.Linear(in_features, out_features, bias=bias is not None, device="meta")
        m.weight = nn.Parameter(W, requires_grad=False)
    if bias is not None:
        m.bias = nn.Parameter(bias.detach().to(dtype).clone(), requires_grad=False)
    elif float_class == "Conv1D":
        m.bias = None  # Conv1D always makes one
    return m


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A ``torch.dtype`` from its name (``float32``/``fp32``, ``bfloat16``/``bf16``, ``float16``/``fp16``)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise PTQUserError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    return DTYPES[dtype]
