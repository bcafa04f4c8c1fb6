"""Export to the compressed-tensors checkpoint format (``quant_method: "compressed-tensors"``),
the format vLLM and ``transformers`` read, described and packed by the ``compressed-tensors``
package itself (extra ``ptq[serve]``), so the layout follows the library's version.

Weight-only layers (RTN, GPTQ, ...) become ``pack-quantized``: ``weight_packed`` (int32),
``weight_scale`` ``[out, G]``, ``weight_shape`` and, asymmetric only, ``weight_zero_point``.
compressed-tensors uses *signed* codes ``c in [-2**(b-1), 2**(b-1) - 1]`` and
``w = scale * (c - zp)``; ptq's unsigned codes ``q in [0, maxq]`` with ``w = scale * (q - zero)``
map exactly with ``c = q - 2**(b-1)`` and ``zp = zero - 2**(b-1)`` (same difference ``c - zp =
q - zero``). ptq's symmetric grid has ``zero = 2**(b-1)``, i.e. ``zp = 0``: compressed-tensors'
symmetric scheme with no zero point stored.

W8A8 layers become ``int-quantized``: int8 ``weight`` with per-channel ``weight_scale`` and int8
``input_activations``: dynamic per-token, or static per-tensor with ``input_scale``
(SmoothQuant's smoothing is already folded into the norms, so nothing else is stored).

Scales are written in the model's float dtype (float32 for ptq's models), so the dequantized
weight a loader computes (``(c - zp) * scale`` in the scale's dtype) equals ptq's. Layers left in
float are listed in ``ignore``. Act-order with permuted groups (``g_idx``) is refused:
compressed-tensors 0.20 removed ``actorder="group"``.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import ptq
from ptq.checkpoint.files import atomic_folder, write_checkpoint
from ptq.checkpoint.layer_grid import layer_grid
from ptq.checkpoint.save import float_linears, float_state
from ptq.modules.quant_linear import QuantLinear
from ptq.modules.swap import quantized_modules
from ptq.modules.w8a8_linear import W8A8Linear
from ptq.errors import PTQUserError

QUANT_METHOD = "compressed-tensors"


def _library() -> Any:
    try:
        import compressed_tensors
    except ImportError as exc:
        raise PTQUserError("the compressed-tensors format needs the compressed-tensors package: "
                         "pip install 'ptq[serve]'") from exc
    return compressed_tensors


def weight_only_scheme(qm: QuantLinear) -> dict[str, Any]:
    """The ``QuantizationArgs`` fields of one weight-only layer; ``ValueError`` if it cannot be held."""
    grid = layer_grid(qm)
    if grid.spec.granularity == "group" and not grid.consecutive_groups:
        raise PTQUserError("compressed-tensors 0.20 has no act-order groups (g_idx; actorder='group' was removed); "
                         "quantize with --static-groups or per channel, or use --format gptq|ptq")
    args: dict[str, Any] = {"num_bits": grid.spec.bits, "type": "int", "symmetric": grid.spec.symmetric,
                            "strategy": grid.spec.granularity}
    if grid.spec.granularity == "group":
        args["group_size"] = grid.spec.group_size
    return {"weights": args, "input_activations": None, "format": "pack-quantized"}


def w8a8_scheme(qm: W8A8Linear) -> dict[str, Any]:
    """``int-quantized``: int8 per-channel weights, int8 per-token dynamic or static per-tensor inputs."""
    act = ({"strategy": "token", "dynamic": True} if qm.act == "per-token" else {"strategy": "tensor", "dynamic": False})
    return {"weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
            "input_activations": {"num_bits": 8, "type": "int", "symmetric": True, **act},
            "format": "int-quantized"}


def layer_scheme(name: str, qm: nn.Module) -> dict[str, Any]:
    if isinstance(qm, QuantLinear):
        return weight_only_scheme(qm)
    if isinstance(qm, W8A8Linear):
        return w8a8_scheme(qm)
    raise PTQUserError(f"the compressed-tensors export holds weight-only (RTN, GPTQ) and W8A8 layers; {name} is a "
                     f"{type(qm).__name__} (LLM.int8() keeps outliers in float: use --format ptq)")


def _compress(scheme: Any, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from compressed_tensors.compressors import BaseCompressor

    return dict(BaseCompressor.load_from_registry(scheme.format).compress(state, scheme))


def layer_tensors(qm: nn.Module, scheme: Any, scale_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The compressed tensors of one layer (without the name prefix), checked against ptq's codes."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    if isinstance(qm, W8A8Linear):
        state = {"weight": qm.dequantize_weight(), "weight_scale": qm.weight_scale.float().reshape(-1, 1)}
        out = _compress(scheme, state)
        if not torch.equal(out["weight"].to(torch.int8), qm.qweight.cpu()):
            raise RuntimeError("compressed-tensors re-rounded a W8A8 weight (its codes differ from ptq's)")
        if qm.act == "static":
            out["input_scale"] = qm.act_scale.float().reshape(1)
    else:
        grid = layer_grid(qm)
        half = 1 << (grid.spec.bits - 1)
        G = grid.scale.shape[1] if grid.spec.granularity != "tensor" else 1
        scale = grid.scale[:, :G] if grid.spec.granularity != "tensor" else grid.scale[:1, :1].reshape(1)
        state = {"weight": grid.dequantize(), "weight_scale": scale.clone()}
        if not grid.spec.symmetric:
            zp = grid.zero[:, :G] if grid.spec.granularity != "tensor" else grid.zero[:1, :1].reshape(1)
            state["weight_zero_point"] = (zp - half).to(torch.int8)
        out = _compress(scheme, state)
        signed = unpack_from_int32(out["weight_packed"], grid.spec.bits, out["weight_shape"])
        if not torch.equal(signed.long() + half, grid.codes):
            raise RuntimeError("compressed-tensors re-rounded a weight (its codes differ from ptq's); not exported")
    if getattr(qm, "bias", None) is not None:
        out["bias"] = qm.bias
    return {k: (v.to(scale_dtype) if k in ("weight_scale", "input_scale") else v) for k, v in out.items()}


def float_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's float parameters (float32 if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def build_config(schemes: Mapping[str, dict[str, Any]], ignore: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``quantization_config`` (via ``compressed_tensors.QuantizationConfig``) and each layer's scheme object.

    One config group per distinct scheme: ``targets: ["Linear"]`` when every quantized layer
    shares it, else the layers' exact names.
    """
    lib = _library()
    from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme

    by_scheme: dict[str, list[str]] = defaultdict(list)
    for name, s in schemes.items():
        by_scheme[json.dumps(s, sort_keys=True)].append(name)
    groups, objects = {}, {}
    for i, (key, names) in enumerate(by_scheme.items()):
        targets = ["Linear"] if len(by_scheme) == 1 else sorted(names)
        scheme = QuantizationScheme(targets=targets, **json.loads(key))
        groups[f"group_{i}"] = scheme
        objects.update({n: scheme for n in names})
    formats = sorted({s["format"] for s in schemes.values()})
    config = QuantizationConfig(config_groups=groups, format=formats[0] if len(formats) == 1 else "mixed-precision",
                                quantization_status="compressed", ignore=sorted(ignore))
    qc = config.model_dump(exclude_none=False)
    qc["quant_method"] = QUANT_METHOD
    qc["version"] = lib.__version__
    return json.loads(json.dumps(qc, default=str)), objects


def export_compressed_tensors(
    model: nn.Module, directory: str | Path, records: Mapping[str, Any] | None = None,
    tokenizer: Any = None, extra: dict[str, Any] | None = None, overwrite: bool = False,
) -> Path:
    """Write ``model`` as a compressed-tensors checkpoint (``ValueError`` for layers it cannot hold)."""
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    _library()
    qmodules = quantized_modules(model, records)
    if not qmodules:
        raise PTQUserError("the compressed-tensors format needs quantized layers; this model has none")
    schemes = {name: layer_scheme(name, qm) for name, qm in qmodules.items()}
    qc, objects = build_config(schemes, float_linears(model, qmodules))
    sdtype = float_dtype(model)
    tensors = float_state(model, qmodules)
    for name, qm in qmodules.items():
        tensors.update({f"{name}.{k}": v for k, v in layer_tensors(qm, objects[name], sdtype).items()})
    qc.setdefault("meta", {})["quantizer"] = f"ptq:{ptq.__version__}"
    with atomic_folder(directory, overwrite=overwrite) as tmp:
        write_checkpoint(tmp, tensors, model, qc, tokenizer=tokenizer, extra=extra)
    return directory
