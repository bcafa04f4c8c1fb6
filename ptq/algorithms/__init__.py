"""Quantization algorithms as pure functions on tensors."""
from ptq.algorithms.result import QuantizedWeight
from ptq.algorithms.rtn import rtn

__all__ = ["QuantizedWeight", "rtn"]
