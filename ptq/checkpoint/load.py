"""Load a ptq (or GPTQ-format) checkpoint without materialising float weights for quantized layers.

The model is built from ``config.json`` with its parameters on the meta device
(``accelerate.init_empty_weights``; buffers such as rotary frequencies are computed for
real), quantized layers are swapped for empty skeletons, and the safetensors tensors are
assigned (``load_state_dict(..., assign=True)``: no second copy). Tied embeddings are
re-tied with ``model.tie_weights()``. Only JSON and safetensors are read; no code from the
folder is run (``trust_remote_code`` is never set).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptq.checkpoint.config import QUANT_METHOD, parse_quantization_config
from ptq.checkpoint.files import read_json, read_tensors
from ptq.layers import resolve_dtype
from ptq.modules.swap import qmodule_entry, set_submodule
from ptq.errors import PTQUserError

QUANT_METHODS = (QUANT_METHOD, "gptq")


def is_quantized_checkpoint(path: str | Path) -> bool:
    """True if ``path`` is a folder whose ``config.json`` has a ptq or GPTQ ``quantization_config``."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        qc = read_json(config).get("quantization_config")
    except ValueError:
        return False
    return isinstance(qc, dict) and qc.get("quant_method") in QUANT_METHODS


def empty_model(config_dict: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    """The causal LM of ``config_dict`` with its parameters on the meta device."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    d = {k: v for k, v in config_dict.items() if k != "quantization_config"}
    model_type = d.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise PTQUserError(f"config.json has an unknown model_type {model_type!r}")
    config = CONFIG_MAPPING[model_type].from_dict(d)
    with init_empty_weights(include_buffers=False):
        try:
            return AutoModelForCausalLM.from_config(config, dtype=dtype)
        except (KeyError, ValueError) as exc:
            raise PTQUserError(f"cannot build a causal LM from config.json ({model_type}): {exc}") from exc


def swap_skeletons(model: nn.Module, module_configs: dict[str, dict[str, Any]], dtype: torch.dtype) -> dict[str, nn.Module]:
    """Replace each named float layer by an empty quantized module of its configured kind."""
    swapped = {}
    for name, cfg in module_configs.items():
        entry = qmodule_entry(cfg["kind"])
        float_module = model.get_submodule(name)
        if not isinstance(float_module, entry.replaces):
            raise PTQUserError(f"{name} is a {type(float_module).__name__}, which {entry.cls.__name__} does not replace")
        qm = entry.cls.from_config(float_module, cfg, dtype=dtype)
        qm.method = cfg.get("method")
        set_submodule(model, name, qm)
        swapped[name] = qm
    return swapped


def assign_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], qmodules: dict[str, nn.Module],
                   dtype: torch.dtype) -> None:
    """Check every tensor against the model's (shape, dtype) and assign it; tie; nothing left on meta.

    Tensors of quantized modules must have exactly the expected dtype (``bias`` excepted);
    float tensors are converted to ``dtype``.
    """
    expected = model.state_dict()
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise PTQUserError(f"the checkpoint has tensors the model does not: {unexpected[:5]}")
    prefixes = tuple(f"{name}." for name in qmodules)
    state = {}
    for key, t in tensors.items():
        e = expected[key]
        if tuple(t.shape) != tuple(e.shape):
            raise PTQUserError(f"tensor {key} has shape {list(t.shape)}, expected {list(e.shape)}")
        exact = key.startswith(prefixes) and not key.endswith(".bias")
        if exact and t.dtype != e.dtype:
            raise PTQUserError(f"tensor {key} has dtype {t.dtype}, expected {e.dtype}")
        if not exact and t.dtype != e.dtype:
            if not (t.dtype.is_floating_point and e.dtype.is_floating_point):
                raise PTQUserError(f"tensor {key} has dtype {t.dtype}, expected {e.dtype}")
            t = t.to(e.dtype)
        state[key] = t
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()  # ties what the config says is tied (a no-op otherwise)
    missing = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if missing:
        raise PTQUserError(f"the checkpoint lacks {len(missing)} tensor(s): {missing[:5]}")


def load_tokenizer(path: Path) -> Any:
    """The tokenizer saved in ``path`` (``None`` if there is none)."""
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except Exception as exc:  # a truncated or corrupt tokenizer file: transformers / tokenizers raise anything
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PTQUserError(f"cannot read the tokenizer files in {path} (truncated or corrupt?): {first}") from exc


def load_quantized(path: str | Path, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """Load a checkpoint written by :func:`save_quantized` or in the GPTQ format.

    Returns ``(model, tokenizer)`` (``tokenizer`` is ``None`` if the folder has none); the
    model is in eval mode on ``device``, float tensors in ``dtype``. A truncated file, a
    tensor of the wrong shape or dtype, an unknown method or a newer ``format_version``
    raise ``ValueError``.
    """
    from ptq.checkpoint import gptq_format

    path = Path(path)
    if not path.is_dir():
        raise PTQUserError(f"{path} is not a checkpoint folder")
    dtype = resolve_dtype(dtype)
    config_dict = read_json(path / "config.json")
    qc = config_dict.get("quantization_config")
    if not isinstance(qc, dict):
        raise PTQUserError(f"{path / 'config.json'} has no quantization_config: not a quantized checkpoint")
    method = qc.get("quant_method")
    if method not in QUANT_METHODS:
        raise PTQUserError(f"unsupported quant_method {method!r} in {path / 'config.json'} (supported: {', '.join(QUANT_METHODS)})")
    model = empty_model(config_dict, dtype)
    tensors = read_tensors(path)
    if method == QUANT_METHOD:
        module_configs = parse_quantization_config(qc, model)
    else:
        module_configs, tensors = gptq_format.gptq_to_ptq(qc, tensors, model)
    qmodules = swap_skeletons(model, module_configs, dtype)
    assign_tensors(model, tensors, qmodules, dtype)
    del tensors
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), load_tokenizer(path)
