"""The built-in choosers: ``minmax``, ``mse`` and ``mse-weighted`` (:mod:`ptq.qparams`)."""
from __future__ import annotations

import torch

from ptq import qparams as _qparams
from ptq.choosers.registry import register_qparams
from ptq.spec import QuantSpec


@register_qparams("minmax")
def minmax(W: torch.Tensor, spec: QuantSpec, importance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's own range ``[min, max]`` (:func:`ptq.qparams.minmax_qparams`)."""
    return _qparams.minmax_qparams(W, spec)


@register_qparams("mse")
def mse(W: torch.Tensor, spec: QuantSpec, importance: torch.Tensor | None = None, grid: int = 100,
        maxshrink: float = 0.8, norm: float = 2.4) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ's shrink search of the range minimising ``sum |q - w|^norm`` (:func:`ptq.qparams.mse_qparams`)."""
    return _qparams.mse_qparams(W, spec, grid=grid, maxshrink=maxshrink, norm=norm)


@register_qparams("mse-weighted", uses_importance=True)
def mse_weighted(W: torch.Tensor, spec: QuantSpec, importance: torch.Tensor | None = None, grid: int = 100,
                 maxshrink: float = 0.8, norm: float = 2.4) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``mse`` search with column ``j``'s error weighted by ``importance[j]`` (e.g. ``diag(H)``,
    llama.cpp's importance matrix): ``sum_j c_j |q_j - w_j|^norm``. Without ``importance`` it is ``mse``."""
    column_weight = None if importance is None else importance.to(W.dtype)
    return _qparams.mse_qparams(W, spec, grid=grid, maxshrink=maxshrink, norm=norm, column_weight=column_weight)
