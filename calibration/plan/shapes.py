"""The shapes a plan needs, read from a model's config alone (no weights): :func:`model_shape`.

The model is built on the meta device (``accelerate.init_empty_weights``) from its config, so
every architecture ``transformers`` knows gives its exact parameter counts and the exact
linear layers of its decoder blocks, without one byte of weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from calibration.models.blocks import find_decoder_blocks, find_linear_layers, linear_weight
from calibration.models.loading import ALIASES, ModelNotFoundError, _gguf_cache_folder, resolve_dtype


@dataclass
class ModelShape:
    """What a plan needs of a model (parameter counts are elements, not bytes)."""

    model_type: str
    num_blocks: int
    hidden: int
    heads: int
    head_dim: int
    vocab: int
    max_positions: int | None
    linears: dict[str, tuple[int, int]]  # one block's linear layers: name -> (out_features, in_features)
    block_params: int  # elements of one decoder block (linears, norms, biases)
    embed_params: int  # input embedding
    other_params: int  # everything else stored once (final norm, an untied lm_head, positions)
    lm_head_params: int  # the output projection (computed per token in evaluations, tied or not)
    tied: bool
    attn_implementation: str = "sdpa"
    quantized_bytes: int | None = None  # a quantized checkpoint: its weight file size
    dtype: torch.dtype = torch.float32
    config: Any = field(default=None, repr=False)

    @property
    def params(self) -> int:
        return self.num_blocks * self.block_params + self.embed_params + self.other_params

    @property
    def block_linear_params(self) -> int:
        return sum(o * i for o, i in self.linears.values())


def load_config(name: str | os.PathLike) -> tuple[Any, Path | None]:
    """``(config, folder)`` of a model name without loading weights: an alias or ``.gguf`` (the cached
    converted folder if there is one, else the GGUF metadata), a local folder, or a hub id."""
    from transformers import AutoConfig

    name = str(name)
    gguf = ALIASES[name]() if name in ALIASES else Path(name).expanduser() if name.endswith(".gguf") else None
    if gguf is not None:
        if not gguf.is_file():
            raise ModelNotFoundError(f"GGUF file {name} does not exist")
        cached = _gguf_cache_folder(gguf)
        if (cached / "config.json").is_file():
            return AutoConfig.from_pretrained(str(cached)), cached
        return AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name), None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{name} is a folder without config.json; expected a Hugging Face model folder")
        return _folder_config(path), path
    try:
        return AutoConfig.from_pretrained(name), None
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot read the config of model {name!r} (not a local folder, .gguf file or "
                                 f"reachable hub id): {str(exc).splitlines()[0]}") from exc


def _folder_config(path: Path) -> Any:
    """A folder's config; a ptq / GPTQ checkpoint's ``quantization_config`` is set aside (kept in
    ``config.ptq_quantization``) so that ``transformers`` does not try to load a quantizer."""
    import json

    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"{path / 'config.json'} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelNotFoundError(f"{path / 'config.json'} must hold a JSON object")
    qc = data.pop("quantization_config", None)
    if data.get("model_type") not in CONFIG_MAPPING:
        raise ModelNotFoundError(f"{path / 'config.json'} has an unknown model_type {data.get('model_type')!r}")
    config = CONFIG_MAPPING[data["model_type"]].from_dict(data)
    config.ptq_quantization = qc
    return config


def model_shape(name: str | os.PathLike, dtype: str | torch.dtype = "float32") -> ModelShape:
    """The :class:`ModelShape` of model ``name`` (see :func:`load_config`) in ``dtype``."""
    config, folder = load_config(name)
    return shape_of_config(config, dtype, folder)


def shape_of_config(config: Any, dtype: str | torch.dtype = "float32", folder: Path | None = None) -> ModelShape:
    """The :class:`ModelShape` of a ``transformers`` config (the model is built on the meta device)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    prefix, blocks = find_decoder_blocks(model)
    block = blocks[0]
    linears = {n: tuple(linear_weight(m).shape) for n, m in find_linear_layers(block).items()}
    embedding = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = bool(getattr(config, "tie_word_embeddings", False)) and out is not None
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    embed_params = embedding.weight.numel()
    lm_head = out.weight.numel() if out is not None else 0
    seen = {id(embedding.weight)} | in_blocks
    other = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if out is not None and p is out.weight and tied:
            continue
        other += p.numel()
    heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1))
    hidden = int(embedding.weight.shape[1])
    quantized = None
    if folder is not None and getattr(config, "ptq_quantization", None):
        files = list(folder.glob("*.safetensors"))
        quantized = sum(f.stat().st_size for f in files) or None
    return ModelShape(
        model_type=config.model_type, num_blocks=len(blocks), hidden=hidden, heads=heads,
        head_dim=int(getattr(config, "head_dim", None) or hidden // heads), vocab=int(embedding.weight.shape[0]),
        max_positions=_max_positions(config), linears=linears, block_params=sum(p.numel() for p in block.parameters()),
        embed_params=embed_params, other_params=other, lm_head_params=lm_head, tied=tied,
        attn_implementation=str(getattr(model.config, "_attn_implementation", None) or "sdpa"),
        quantized_bytes=quantized, dtype=torch_dtype, config=config,
    )


def _max_positions(config: Any) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
