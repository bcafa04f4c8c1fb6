"""ptq: calibration-based post-training quantization for large language models.

The ``ptq`` package is the bottom layer: number formats (:class:`QuantSpec`), quantization
parameters, quantize / dequantize / fake-quantize, bit packing, the algorithms as pure
functions, quantized modules and checkpoints. It reads no dataset and prints nothing.
"""
from ptq.spec import Granularity, QuantSpec
from ptq.qparams import compute_qparams, minmax_qparams, mse_qparams, reduce_minmax
from ptq.quantize import dequantize, fake_quantize, quantize
from ptq.packing import pack_codes, packed_length, unpack_codes

__version__ = "0.1.0"

__all__ = [
    "Granularity",
    "QuantSpec",
    "compute_qparams",
    "minmax_qparams",
    "mse_qparams",
    "reduce_minmax",
    "quantize",
    "dequantize",
    "fake_quantize",
    "pack_codes",
    "unpack_codes",
    "packed_length",
    "__version__",
]
