"""Symmetric absmax int8 quantization: the grid of W8A8 and LLM.int8() layers.

LLM.int8() (Dettmers et al., 2022, §2 "absmax quantization", §3.1 "vector-wise") and
SmoothQuant (Xiao et al., 2023, §2) use signed codes in ``[-127, 127]`` with one scale per
slice (a token row of ``X``, an output row of ``W``) or per tensor::

    s   = max |x| / 127              (1 for an all-zero slice: every code is 0)
    x_q = clamp(round(x / s), -127, 127)

These are the hot path of every int8 forward pass, so each is written as few passes over
memory as possible: ``|x|.amax`` (one fused reduction; ``torch.aminmax`` is several times
slower on CPU), then one division, an in-place round and clamp, one cast.
"""
from __future__ import annotations

import torch

QMAX = 127


def absmax_scale(amax: torch.Tensor) -> torch.Tensor:
    """``amax / 127`` as float32, with 1 where ``amax == 0`` (then every code is 0)."""
    amax = amax.float()
    return torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))


def quantize_symmetric(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 codes ``clamp(round(x / scale), -127, 127)`` (``scale`` broadcast against ``x``)."""
    return torch.div(x.float(), scale).round_().clamp_(-QMAX, QMAX).to(torch.int8)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes ``[..., K]`` int8 and scales ``[..., 1]`` float32, one scale per row (token).

    The codes equal :func:`quantize_symmetric`'s with one pass fewer: no clamp, since a row's own
    absmax bounds it. With ``s = fl(amax / 127)`` and ``|x| <= amax``, ``|fl(x / s)| <= 127 (1 + 2**-23)``
    rounds to at most 127 (an all-zero row has ``s = 1`` and codes 0).
    """
    x = x.float()
    scale = absmax_scale(x.abs().amax(dim=-1, keepdim=True))
    return torch.div(x, scale).round_().to(torch.int8), scale


def quantize_tensor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes int8 and one float32 scale ``[]`` for the whole tensor."""
    scale = absmax_scale(x.abs().amax() if x.numel() else torch.zeros(()))
    return quantize_symmetric(x, scale), scale
