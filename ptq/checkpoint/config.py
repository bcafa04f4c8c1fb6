"""The ``quantization_config`` of a ptq checkpoint (inside ``config.json``).

Example (``format_version`` 1)::

    {"quant_method": "ptq", "format_version": 1, "ptq_version": "0.1.0",
     "method": "gptq", "kind": "weight_only",
     "bits": 4, "granularity": "group", "group_size": 64, "symmetric": false,
     "include_zero": true, "act_order": false, "scale_dtype": "float32",
     "overrides": {"model.layers.0.mlp.down_proj": {"method": "rtn", "kind": "weight_only", "bits": 8, ...}},
     "modules_in_float": ["lm_head"]}

The top level is the default module configuration (the most common one); ``overrides``
holds the full configuration of every quantized module that differs from it, and
``modules_in_float`` the linear layers (``nn.Linear`` / ``Conv1D``) stored in float. Every
other linear layer of the model is quantized with the default configuration.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

from torch import nn

import ptq
from ptq.layers import LINEAR_TYPES
from ptq.modules.quant_linear import SPEC_FIELDS
from ptq.modules.swap import WEIGHT_ONLY_METHODS, qmodule_entry
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError

QUANT_METHOD = "ptq"
FORMAT_VERSION = 1
_TOP_KEYS = ("quant_method", "format_version", "ptq_version", "overrides", "modules_in_float")


def module_config(module: nn.Module, method: str | None) -> dict[str, Any]:
    """``{"method": ..., **module.quant_config()}`` of one quantized module."""
    return {"method": method or getattr(module, "method", None) or module.kind, **module.quant_config()}


def build_quantization_config(qmodules: dict[str, nn.Module], methods: dict[str, str | None],
                              modules_in_float: list[str]) -> dict[str, Any]:
    """The ``quantization_config`` of a model whose quantized modules are ``qmodules``."""
    configs = {name: module_config(m, methods.get(name)) for name, m in qmodules.items()}
    return config_from_module_configs(configs, modules_in_float)


def config_from_module_configs(configs: dict[str, dict[str, Any]], modules_in_float: list[str]) -> dict[str, Any]:
    """The ``quantization_config`` of quantized modules given by their :func:`module_config` (a model
    written block by block keeps only these, not the modules)."""
    if configs:
        counts = Counter(json.dumps(c, sort_keys=True) for c in configs.values())
        default = json.loads(counts.most_common(1)[0][0])
    else:
        default = {"method": "none"}
    overrides = {name: c for name, c in configs.items() if c != default}
    return {"quant_method": QUANT_METHOD, "format_version": FORMAT_VERSION, "ptq_version": ptq.__version__,
            **default, "overrides": overrides, "modules_in_float": sorted(modules_in_float)}


def check_module_config(name: str, config: Any) -> dict[str, Any]:
    """Validate one module configuration; ``ValueError`` naming the module otherwise."""
    if not isinstance(config, dict):
        raise PTQUserError(f"quantization_config of {name}: expected an object, got {type(config).__name__}")
    kind, method = config.get("kind"), config.get("method")
    try:
        qmodule_entry(str(kind))
    except ValueError as exc:
        raise PTQUserError(f"quantization_config of {name}: {exc}") from exc
    if kind in ("weight_only", "linear4bit"):
        if method not in WEIGHT_ONLY_METHODS:
            raise PTQUserError(f"quantization_config of {name}: unknown method {method!r} "
                             f"(weight-only methods: {', '.join(sorted(WEIGHT_ONLY_METHODS))})")
        try:
            QuantSpec(**{k: config[k] for k in SPEC_FIELDS if k in config})
        except (TypeError, ValueError) as exc:
            raise PTQUserError(f"quantization_config of {name}: {exc}") from exc
        if kind == "weight_only" and config.get("scale_dtype") not in ("float16", "float32"):
            raise PTQUserError(f"quantization_config of {name}: scale_dtype must be float16 or float32, "
                             f"got {config.get('scale_dtype')!r}")
    return config


def parse_quantization_config(qc: Any, model: nn.Module) -> dict[str, dict[str, Any]]:
    """Module configuration of every quantized layer of ``model`` (built from ``config.json``).

    Raises ``ValueError`` for an unknown method or kind, a newer ``format_version``, or layer
    names the model does not have.
    """
    if not isinstance(qc, dict):
        raise PTQUserError("quantization_config must be a JSON object")
    if qc.get("quant_method") != QUANT_METHOD:
        raise PTQUserError(f"not a ptq checkpoint: quant_method is {qc.get('quant_method')!r}")
    version = qc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PTQUserError(f"quantization_config format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise PTQUserError(
            f"this checkpoint has format_version {version}, written by a newer ptq "
            f"({qc.get('ptq_version', '?')}); this ptq ({ptq.__version__}) reads format_version {FORMAT_VERSION}: upgrade ptq"
        )
    overrides = qc.get("overrides", {})
    in_float = qc.get("modules_in_float", [])
    if not isinstance(overrides, dict) or not isinstance(in_float, list):
        raise PTQUserError("quantization_config: overrides must be an object and modules_in_float a list")
    linears = {n for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)}
    unknown = sorted((set(overrides) | set(in_float)) - linears)
    if unknown:
        raise PTQUserError(f"quantization_config names layers the model does not have: {unknown[:5]}")
    default = {k: v for k, v in qc.items() if k not in _TOP_KEYS}
    quantized = sorted(linears - set(in_float))
    if quantized and default.get("method") == "none":
        raise PTQUserError(f"quantization_config has method 'none' but layers not in modules_in_float: {quantized[:5]}")
    out = {}
    for name, _ in model.named_modules():
        if name in linears and name not in in_float:
            out[name] = check_module_config(name, overrides.get(name, default))
    return out
