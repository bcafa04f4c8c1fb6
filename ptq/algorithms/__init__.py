"""Quantization algorithms as pure functions on tensors."""
from ptq.algorithms.awq import apply_clip, awq_clip, awq_scales
from ptq.algorithms.gptq import gptq
from ptq.algorithms.hessian import HessianAccumulator
from ptq.algorithms.hqq import hqq
from ptq.algorithms.result import QuantizedWeight
from ptq.algorithms.rtn import rtn

__all__ = ["HessianAccumulator", "QuantizedWeight", "apply_clip", "awq_clip", "awq_scales", "gptq", "hqq", "rtn"]
