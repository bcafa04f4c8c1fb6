"""Model loading (HF id, local folder, GGUF, built-in alias) and architecture discovery."""
from calibration.models.blocks import (
    LINEAR_TYPES,
    find_decoder_blocks,
    find_linear_layers,
    is_linear,
    linear_weight,
    set_linear_weight,
)
from calibration.models.loading import ALIASES, ModelNotFoundError, cache_dir, load_model, resolve_device, resolve_dtype

__all__ = [
    "ALIASES",
    "ModelNotFoundError",
    "cache_dir",
    "load_model",
    "resolve_device",
    "resolve_dtype",
    "LINEAR_TYPES",
    "find_decoder_blocks",
    "find_linear_layers",
    "is_linear",
    "linear_weight",
    "set_linear_weight",
]
