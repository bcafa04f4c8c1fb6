"""``Int8OutlierLinear``: the LLM.int8() linear layer (:mod:`ptq.algorithms.llm_int8`).

Stores the int8 weight codes ``[N, K]`` and float32 per-row (or per-tensor) scales, the bias,
and in ``static`` mode the fixed outlier column indices with their float weight columns.

* ``mode="dynamic"``: the outlier columns are found in every forward pass (any
  ``|x| >= threshold`` in the batch), their weight columns dequantized from int8 (as
  bitsandbytes does);
* ``mode="static"``: the outlier columns were chosen once from calibration statistics
  (max |x| per input channel >= threshold); their weights are kept in float and left out of
  the int8 rows' absmax, so inference does no search;
* ``threshold=inf`` (dynamic): no decomposition, the "absmax vector-wise" baseline;
  ``granularity="tensor"``: the naive per-tensor absmax baseline;
* ``zero_point=True``: zeropoint instead of absmax quantization of activation rows and weight
  rows (the paper's "zeropoint vector-wise", §2.1 and Table 1), with the weights' int zero
  points in the buffer ``weight_zero``.

``compute="int"`` runs the int8 part as int8 x int8 -> int32 (:func:`ptq.kernels.int8_matmul`);
``compute="fake"`` as a float matmul of the dequantized codes (same numbers up to float
rounding). Inputs of any float dtype are computed in float32 and returned in their dtype
(float16 matmuls are slow or missing on CPU). A batch where every column is an outlier is
computed in float (with one warning per layer).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from ptq.algorithms.llm_int8 import absmax_quantize, check_threshold, decomposed_matmul, dequantize_weight, outlier_columns
from ptq.algorithms.zeropoint import weight_correction, zeropoint_quantize_rows
from ptq.kernels import PackedWeight
from ptq.modules.derived import derived, packed_int8_weight
from ptq.layers import LINEAR_TYPES, check_float_class, float_class as float_class_of, float_linear, weight_2d
from ptq.modules.swap import register_qmodule

MODES = ("dynamic", "static")
GRANULARITIES = ("vector", "tensor")
COMPUTES = ("int", "fake")


class Int8OutlierLinear(nn.Module):
    """LLM.int8() replacement of ``nn.Linear`` / ``Conv1D`` (module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold: float = 6.0,
                 mode: str = "dynamic", granularity: str = "vector", compute: str = "int", n_outliers: int = 0,
                 float_class: str = "Linear", dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, zero_point: bool = False) -> None:
        super().__init__()
        check_threshold(threshold)
        for name, value, allowed in (("mode", mode, MODES), ("granularity", granularity, GRANULARITIES),
                                     ("compute", compute, COMPUTES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        if zero_point and granularity != "vector":
            raise ValueError("zero_point quantizes rows: it needs granularity 'vector'")
        self.threshold, self.mode, self.granularity, self.compute = float(threshold), mode, granularity, compute
        self.zero_point = bool(zero_point)
        self.float_class = check_float_class(float_class)
        self._warned = False
        kw: dict[str, Any] = {"device": device}
        self.register_buffer("weight_q", torch.zeros(out_features, in_features, dtype=torch.int8, **kw))
        scale_shape = (out_features, 1) if granularity == "vector" else ()
        self.register_buffer("weight_scale", torch.ones(scale_shape, dtype=torch.float32, **kw))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, **kw) if bias else None)
        self.register_buffer("weight_zero", torch.zeros(out_features, 1, dtype=torch.int32, **kw) if zero_point else None)
        self.register_buffer("outlier_idx", torch.zeros(n_outliers, dtype=torch.int64, **kw))
        self.register_buffer("weight_outlier", torch.zeros(out_features, n_outliers, dtype=dtype, **kw))

    @classmethod
    def from_float(cls, module: nn.Module, threshold: float = 6.0, mode: str = "dynamic",
                   granularity: str = "vector", compute: str = "int",
                   outlier_idx: torch.Tensor | None = None, zero_point: bool = False) -> "Int8OutlierLinear":
        """Quantize a float layer; ``outlier_idx`` (static mode) are the fixed outlier columns."""
        if mode == "static" and outlier_idx is None:
            raise ValueError("static mode needs the outlier columns chosen from calibration (outlier_idx)")
        W = weight_2d(module).detach().float()
        out_f, in_f = W.shape
        idx = (outlier_idx if mode == "static" else torch.zeros(0, dtype=torch.int64)).to(torch.int64).reshape(-1)
        m = cls(in_f, out_f, bias=module.bias is not None, threshold=threshold, mode=mode, granularity=granularity,
                compute=compute, n_outliers=idx.numel(), float_class=float_class_of(module), dtype=module.weight.dtype,
                device=W.device, zero_point=zero_point)
        W_int = W.index_fill(1, idx.to(W.device), 0.0) if idx.numel() else W
        if zero_point:
            codes, scale, zero = zeropoint_quantize_rows(W_int)
            m.weight_zero.copy_(zero)
        else:
            codes, scale = absmax_quantize(W_int, dim=-1 if granularity == "vector" else None)
        m.weight_q.copy_(codes)
        m.weight_scale.copy_(scale.reshape(m.weight_scale.shape))
        m.outlier_idx.copy_(idx)
        m.weight_outlier.copy_(W.index_select(1, idx.to(W.device)).to(m.weight_outlier.dtype))
        if module.bias is not None:
            m.bias.copy_(module.bias.detach())
        return m

    @property
    def float_columns(self) -> int:
        """Columns kept in float (static mode; dynamic mode decides per batch)."""
        return int(self.outlier_idx.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        x2 = x.reshape(-1, self.in_features).float()
        x_abs = None  # |x|, shared by the dynamic outlier search and the row scales (absmax rows)
        if self.mode == "static":
            outliers, W_out = self.outlier_idx, self.weight_outlier.float()
            everything = outliers.numel() == self.in_features
        else:
            if not self.zero_point and self.granularity == "vector" and math.isfinite(self.threshold):
                x_abs = x2.abs()
            outliers, W_out = outlier_columns(x2, self.threshold, x_abs), None
            everything = bool(outliers.all())
        if x2.shape[0] and everything:
            if not self._warned:
                warnings.warn(f"LLM.int8(): every input column is an outlier (|x| >= {self.threshold}); "
                              "computing this layer in float", RuntimeWarning, stacklevel=2)
                self._warned = True
            y = x2 @ self.dequantized_weight().t()
        else:
            y = decomposed_matmul(x2, self.weight_q, self.weight_scale, outliers, W_out, self.granularity,
                                  integer=self.compute == "int", zero_point=self.zero_point, W_zero=self.weight_zero,
                                  c_w=self._weight_correction(), packed=self._packed_weight(x2.shape[0]),
                                  x_abs=x_abs)
        if self.bias is not None:
            y = y.add_(self.bias.float())
        return y.to(dtype).reshape(*shape[:-1], self.out_features)

    def _packed_weight(self, M: int) -> PackedWeight | None:
        """``weight_q`` as the int8 backend for ``M`` rows wants it, cached (integer compute only)."""
        return packed_int8_weight(self, self.weight_q, M) if self.compute == "int" else None

    def _weight_correction(self) -> torch.Tensor | None:
        """``r_w - K z_w`` of the zeropoint int32 identity, computed once per weight."""
        if not self.zero_point or self.compute != "int":
            return None
        return derived(self, "weight_correction", (self.weight_q, self.weight_zero),
                       lambda: weight_correction(self.weight_q, self.weight_zero))

    def dequantized_weight(self) -> torch.Tensor:
        """The float ``[N, K]`` weight the module represents (static outlier columns in float)."""
        W = dequantize_weight(self.weight_q, self.weight_scale, self.weight_zero)
        if self.outlier_idx.numel():
            W = W.index_copy(1, self.outlier_idx, self.weight_outlier.float())
        return W

    def to_float(self, dtype: torch.dtype | None = None) -> nn.Module:
        return float_linear(self.dequantized_weight(), self.bias, self.float_class, dtype)

    def quant_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold if math.isfinite(self.threshold) else "inf",
                "mode": self.mode, "granularity": self.granularity, "compute": self.compute,
                "n_outliers": self.float_columns, **({"zero_point": True} if self.zero_point else {})}

    @classmethod
    def from_config(cls, module: nn.Module, config: dict[str, Any], dtype: torch.dtype = torch.float32) -> "Int8OutlierLinear":
        W = weight_2d(module)
        return cls(W.shape[1], W.shape[0], bias=module.bias is not None, threshold=float(config["threshold"]),
                   mode=config["mode"], granularity=config["granularity"], compute=config.get("compute", "int"),
                   n_outliers=int(config.get("n_outliers", 0)), float_class=float_class_of(module), dtype=dtype, device="meta",
                   zero_point=bool(config.get("zero_point", False)))

    def footprint_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, threshold={self.threshold}, "
                f"mode={self.mode}, granularity={self.granularity}{', zero_point' if self.zero_point else ''}, "
                f"compute={self.compute}, "
                f"float_columns={self.float_columns}")


register_qmodule("llm-int8", LINEAR_TYPES)(Int8OutlierLinear)
