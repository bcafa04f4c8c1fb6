"""W8A8 linear layer: int8 weights and int8 activations, :class:`W8A8Linear` (swap kind ``"w8a8"``).

Symmetric absmax grids with signed codes in ``[-127, 127]`` (LLM.int8(), Dettmers et al., 2022,
§2; SmoothQuant, Xiao et al., 2023, §2 "per-tensor / per-token / per-channel quantization")::

    s_w[n] = max_k |W[n, k]| / 127            W_q = clamp(round(W / s_w), -127, 127)   (per output channel)
    s_x[m] = max_k |X[m, k]| / 127            (per-token, dynamic: computed at run time for each row)
    s_x    = max(|xmin|, |xmax|) / 127        (per-tensor, static: from a calibration observer's range)
    X_q    = clamp(round(X / s_x), -127, 127)
    Y      = s_x * s_w * (X_q @ W_q^T) + b

Two execution paths compute the same numbers up to float rounding:

* ``mode="int"``: ``X_q @ W_q^T`` exactly in int32 by :func:`ptq.kernels.int8_matmul`, then one
  float rescale by the outer product ``s_x s_w^T`` (and the bias);
* ``mode="fake"``: float matmul of the dequantized values ``(s_x X_q) @ (s_w W_q)^T`` (any
  device or dtype; what calibration uses to measure the quantized block's error).

The two paths agree per layer to float rounding (relative 1e-6), not bit for bit: through a whole
model a last-bit difference can move an activation across a rounding boundary of the next layer's
per-token grid, and such flips cascade into a different draw of the same quantization noise
(how large that noise is in perplexity: ``docs/results.md``).

A zero row (or an all-zero calibration range) gets scale 1 (all codes 0, no division by zero).
Per-token scales are checked to be finite (an inf activation raises ``ValueError``); static
scales saturate out-of-range activations (inf included) to ``+-127``.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from ptq.algorithms.absmax import absmax_scale, quantize_rows, quantize_symmetric
from ptq.kernels import PackedWeight, int8_matmul, rescale
from ptq.modules.derived import packed_int8_weight
from ptq.layers import LINEAR_TYPES, check_float_class, float_class as float_class_of, float_linear, weight_2d
from ptq.modules.swap import register_qmodule

ActMode = Literal["per-token", "static"]
ACT_MODES = ("per-token", "static")
EXEC_MODES = ("int", "fake")


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes ``[M, K]`` int8 and scales ``[M, 1]`` float32 of a 2-D activation, one scale per row."""
    q, scale = quantize_rows(x)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError("W8A8Linear: the activation contains inf or NaN; per-token scales need finite values")
    return q, scale


def grid_scale(weight_scale: torch.Tensor, out_features: int) -> torch.Tensor:
    """A given per-channel weight step as float32 ``[out]`` (checked: one positive finite value per row)."""
    s = torch.as_tensor(weight_scale).detach().float().reshape(-1)
    if s.numel() != out_features or not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"weight_scale must hold {out_features} positive finite per-channel steps, "
                         f"got shape {tuple(torch.as_tensor(weight_scale).shape)}")
    return s


def codes_on_grid(W: torch.Tensor, s_w: torch.Tensor, tol: float = 1e-3) -> torch.Tensor:
    """int8 codes ``round(W / s_w)`` of a weight that already lies on the grid ``s_w * [-128, 127]``.

    Raises ``ValueError`` when a code is off the grid by more than ``tol`` of a step or outside
    ``[-128, 127]`` (the weight was not quantized on this grid: rounding again would change it).
    """
    t = torch.div(W.float(), s_w[:, None])
    codes = t.round()
    off = float((t - codes).abs().max()) if t.numel() else 0.0
    if off > tol or (t.numel() and (float(codes.min()) < -128 or float(codes.max()) > 127)):
        raise ValueError(f"the weight does not lie on the given 8-bit grid (off by up to {off:.3g} of a step, "
                         f"codes {float(codes.min()):.0f}..{float(codes.max()):.0f}): quantize it with an "
                         "8-bit symmetric per-channel spec first, or leave weight_scale out")
    return codes.to(torch.int8)


@register_qmodule("w8a8", LINEAR_TYPES)
class W8A8Linear(nn.Module):
    """Replacement of ``nn.Linear`` / ``Conv1D`` with int8 weights and int8 activations.

    Buffers: ``qweight`` int8 ``[out, in]``, ``weight_scale`` float32 ``[out]``, ``act_scale``
    float32 ``[]`` (static activations only), ``bias`` (optional, float).
    """

    kind = "w8a8"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, act: ActMode = "per-token",
                 mode: str = "int", dtype: torch.dtype = torch.float32, float_class: str = "Linear",
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if act not in ACT_MODES:
            raise ValueError(f"act must be one of {', '.join(ACT_MODES)}, got {act!r}")
        if mode not in EXEC_MODES:
            raise ValueError(f"mode must be one of {', '.join(EXEC_MODES)}, got {mode!r}")
        self.in_features, self.out_features = in_features, out_features
        self.act, self.mode, self.float_class = act, mode, check_float_class(float_class)
        kw: dict[str, Any] = {"device": device}
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8, **kw))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, **kw))
        self.register_buffer("act_scale", torch.ones((), dtype=torch.float32, **kw) if act == "static" else None)
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, **kw) if bias else None)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_float(cls, module: nn.Module, act: ActMode = "per-token", act_scale: float | torch.Tensor | None = None,
                   mode: str = "int", weight_scale: torch.Tensor | None = None) -> "W8A8Linear":
        """Quantize a float layer's weight per output channel; ``act_scale`` is needed with ``act="static"``.

        ``weight_scale`` (``[out]``): the per-channel step of an 8-bit symmetric grid the weight
        already lies on, e.g. GPTQ W8 symmetric per-channel (``W = s_w * (q - 128)``, codes
        ``round(W / s_w)`` in ``[-128, 127]``). The codes are then read off that grid, not rounded
        a second time onto the absmax grid; a weight off the grid raises ``ValueError``.
        """
        W = weight_2d(module).detach()
        out, n = W.shape
        bias = getattr(module, "bias", None)
        q = cls(n, out, bias=bias is not None, act=act, mode=mode,
                dtype=W.dtype if W.is_floating_point() else torch.float32, float_class=float_class_of(module), device=W.device)
        if not bool(torch.isfinite(W).all()):
            raise ValueError("W8A8Linear.from_float: the weight contains inf or NaN")
        if weight_scale is None:
            s_w = absmax_scale(W.float().abs().amax(dim=1))
            q.qweight.copy_(quantize_symmetric(W, s_w[:, None]))
        else:
            s_w = grid_scale(weight_scale, out)
            q.qweight.copy_(codes_on_grid(W, s_w))
        q.weight_scale.copy_(s_w)
        if act == "static":
            if act_scale is None:
                raise ValueError("act='static' needs act_scale (from a calibration observer's range: max|x| / 127)")
            s = torch.as_tensor(act_scale, dtype=torch.float32)
            if s.numel() != 1 or not bool(torch.isfinite(s)) or float(s) <= 0:
                raise ValueError(f"act_scale must be one positive finite number, got {act_scale!r}")
            q.act_scale.copy_(s.reshape(()))
        elif act_scale is not None:
            raise ValueError("act_scale is only used with act='static'")
        if bias is not None:
            q.bias.copy_(bias.detach())
        return q

    def quant_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "bits": 8, "act_bits": 8, "act": self.act, "mode": self.mode}

    @classmethod
    def from_config(cls, module: nn.Module, config: dict[str, Any], dtype: torch.dtype = torch.float32) -> "W8A8Linear":
        """An empty skeleton on the meta device replacing the float ``module``."""
        out, n = weight_2d(module).shape
        return cls(n, out, bias=getattr(module, "bias", None) is not None, act=config.get("act", "per-token"),
                   mode=config.get("mode", "int"), dtype=dtype, float_class=float_class_of(module), device="meta")

    # ------------------------------------------------------------------ compute
    def dequantize_weight(self) -> torch.Tensor:
        """``s_w * W_q`` as float32 ``[out, in]``."""
        return self.qweight.float() * self.weight_scale[:, None]

    def quantize_input(self, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 codes ``[M, K]`` and scales (``[M, 1]`` per token, ``[]`` static) of a 2-D input."""
        if self.act == "per-token":
            return quantize_per_token(x2)
        return quantize_symmetric(x2, self.act_scale), self.act_scale

    def _packed_weight(self, M: int) -> PackedWeight | None:
        """``qweight`` as the int8 backend for ``M`` rows wants it, cached (not saved; rebuilt when
        ``qweight`` is replaced or changed in place); see :func:`ptq.modules.derived.packed_int8_weight`."""
        return packed_int8_weight(self, self.qweight, M)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        xq, s_x = self.quantize_input(x2)
        if self.mode == "int":
            acc = int8_matmul(xq, self.qweight, packed=self._packed_weight(xq.shape[0]))
            y = rescale(acc, s_x, self.weight_scale)
        else:
            y = (xq.float() * s_x) @ self.dequantize_weight().t()
        if self.bias is not None:
            y = y.add_(self.bias.float())
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def to_float(self, dtype: torch.dtype | None = None) -> nn.Module:
        """An ``nn.Linear`` (or ``Conv1D``) holding the dequantized weight (activations then unquantized)."""
        return float_linear(self.dequantize_weight(), self.bias, self.float_class, dtype)

    def footprint_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, W8A8 act={self.act}, "
                f"mode={self.mode}, bias={self.bias is not None}")
