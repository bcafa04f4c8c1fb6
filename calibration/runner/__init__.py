"""The block-by-block runner: catch block-0 inputs, then quantize one block at a time."""
from calibration.runner.block_inputs import BlockInputs, catch_block_inputs, run_block
from calibration.runner.context import BlockContext, LayerRecord
from calibration.runner.memory import peak_rss_mb
from calibration.runner.runner import QuantizationResult, quantize_model

__all__ = [
    "BlockContext",
    "BlockInputs",
    "LayerRecord",
    "QuantizationResult",
    "catch_block_inputs",
    "peak_rss_mb",
    "quantize_model",
    "run_block",
]
