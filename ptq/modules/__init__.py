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
from ptq.modules.w8a8_linear import W8A8Linear  # noqa: E402  (registers "w8a8")
from ptq.modules.linear4bit import Linear4bit  # noqa: E402  (registered as "linear4bit" in swap)
from ptq.modules.llm_int8_linear import Int8OutlierLinear  # noqa: E402  (registers "llm-int8")

__all__ = [
    "Int8OutlierLinear",
    "Linear4bit",
    "QuantLinear",
    "W8A8Linear",
    "from_float",
    "is_qmodule",
    "quantize_modules",
    "quantized_modules",
    "register_qmodule",
    "to_float",
]
