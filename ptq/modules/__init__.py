"""Quantized modules and swapping them in and out of a model."""
from ptq.modules.quant_linear import QuantLinear
from ptq.modules.swap import (
    from_float,
    is_qmodule,
    quantize_modules,
    quantized_modules,
    register_qmodule,
    to_float,
)

__all__ = [
    "QuantLinear",
    "from_float",
    "is_qmodule",
    "quantize_modules",
    "quantized_modules",
    "register_qmodule",
    "to_float",
]
