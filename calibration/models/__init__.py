"""Model loading (HF id, local folder, GGUF, built-in alias) and architecture discovery."""
from calibration.models.blocks import (
    LINEAR_TYPES,
    find_decoder_blocks,
    find_linear_layers,
    is_linear,
    linear_weight,
    set_linear_weight,
)

__all__ = [
    "LINEAR_TYPES",
    "find_decoder_blocks",
    "find_linear_layers",
    "is_linear",
    "linear_weight",
    "set_linear_weight",
]
