"""Export and import of the GPTQ checkpoint format (AutoGPTQ, GPTQModel, transformers + optimum).

Per quantized layer ``name`` (``in`` / ``out`` features, ``G`` groups)::

    name.qweight  int32   [in * bits / 32, out]  codes packed along the input dimension: column
                                                  ``o`` is the little-endian bit stream of
                                                  ``code[0..in, o]`` (:func:`ptq.packing.pack_codes`)
    name.qzeros   int32   [G, out * bits / 32]   zero points packed along the output dimension;
                                                  checkpoint_format "gptq" (v1) stores ``zero - 1``
                                                  (AutoGPTQ's ``zeros -= 1``), "gptq_v2" stores ``zero``
    name.scales   float16 [G, out]
    name.g_idx    int32   [in]                   group of input column ``j`` (``j // group_size``
                                                  unless act-order, ``desc_act``)
    name.bias     [out]

and ``w[o, j] = scales[g, o] * (code[j, o] - zero[g, o])`` with ``g = g_idx[j]``. ``config.json``
carries ``quantization_config = {"quant_method": "gptq", "bits", "group_size"`` (-1: per
channel) ``, "desc_act", "sym", "checkpoint_format", ...}`` and ``quantize_config.json`` the
same for AutoGPTQ. v1 cannot store a zero point of 0 (``0 - 1`` borrows into the next field);
such models are written as "gptq_v2" (GPTQModel) with a warning. Reading v1, ``1`` is added
to every field (see :func:`_decode_zeros`).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import ptq
from ptq.checkpoint.files import atomic_folder, write_checkpoint
from ptq.checkpoint.save import float_linears, float_state
from ptq.layers import is_linear, weight_2d
from ptq.modules.quant_linear import QuantLinear, unpack_rows
from ptq.modules.swap import quantized_modules
from ptq.packing import pack_codes
from ptq.spec import QuantSpec
from ptq.errors import PTQUserError

GPTQ_BITS = (2, 3, 4, 8)
CHECKPOINT_FORMATS = ("gptq", "gptq_v2")
_MASK32 = 0xFFFFFFFF


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    words = words & _MASK32
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def check_gptq_spec(spec: QuantSpec) -> None:
    """``ValueError`` unless the GPTQ format can hold ``spec`` (2/3/4/8 bits, channel or group)."""
    if spec.bits not in GPTQ_BITS:
        raise PTQUserError(f"the GPTQ format holds {'/'.join(map(str, GPTQ_BITS))}-bit codes, not {spec.bits}")
    if spec.granularity == "tensor":
        raise PTQUserError("the GPTQ format has per-channel or per-group scales; use --granularity channel or group")
    if spec.float_zero or spec.codebook:
        raise PTQUserError(f"the GPTQ format holds integer codes with integer zero points, not {spec.describe()} "
                           "(real-valued zeros or a 4-bit code book); use --format ptq")


def check_gptq_exportable(qmodules: Mapping[str, nn.Module]) -> QuantSpec:
    """The one spec shared by all quantized layers; ``ValueError`` if the GPTQ format cannot hold them."""
    if not qmodules:
        raise PTQUserError("the GPTQ format needs quantized layers; this model has none")
    specs = {}
    for name, qm in qmodules.items():
        if not isinstance(qm, QuantLinear):
            raise PTQUserError(f"the GPTQ format holds weight-only layers; {name} is a {type(qm).__name__}")
        check_gptq_spec(qm.spec)
        if qm.in_features % 32 or qm.out_features % 32:
            raise PTQUserError(f"the GPTQ format needs in/out features divisible by 32; {name} is "
                             f"{qm.in_features} -> {qm.out_features}")
        specs.setdefault((qm.spec.bits, qm.spec.symmetric, qm.spec.granularity, qm.spec.group_size), name)
    if len(specs) > 1:
        raise PTQUserError(f"the GPTQ format has one bits/group_size/sym for all layers; found {len(specs)}: "
                         + ", ".join(f"{k[0]} bits {k[2]} g{k[3]} sym={k[1]} ({v})" for k, v in specs.items()))
    return next(iter(qmodules.values())).spec  # type: ignore[union-attr]


def qlinear_to_gptq(qm: QuantLinear, v1: bool = True) -> dict[str, torch.Tensor]:
    """The GPTQ tensors (without the layer-name prefix) of one :class:`QuantLinear`."""
    spec = qm.spec
    zeros = qm.zeros().round().to(torch.int64).t()  # [G, out]
    if v1:
        if bool((zeros < 1).any()):
            raise PTQUserError("checkpoint_format 'gptq' (v1) stores zero - 1 and cannot hold a zero point of 0")
        zeros = zeros - 1
    group_size = spec.group_size if spec.granularity == "group" else qm.in_features
    g_idx = qm.g_idx if qm.g_idx is not None else torch.arange(qm.in_features) // group_size
    out = {
        "qweight": pack_codes(qm.codes(), spec.bits).t().contiguous(),
        "qzeros": pack_codes(zeros, spec.bits),
        "scales": qm.scales.to(torch.float16).t().contiguous(),
        "g_idx": g_idx.to(torch.int32),
    }
    if qm.bias is not None:
        out["bias"] = qm.bias
    return out


def _block_layout(qnames: list[str], float_names: list[str]) -> dict[str, Any]:
    """``block_name_to_quantize`` / ``modules_in_block_to_quantize`` when block layers stay in float."""
    pattern = re.compile(r"^(.*?)\.(\d+)\.(.+)$")
    parsed = [m.groups() for m in map(pattern.match, qnames) if m]
    prefixes = {p for p, _, _ in parsed}
    if len(parsed) != len(qnames) or len(prefixes) != 1:
        return {}
    prefix = prefixes.pop()
    in_blocks = [n for n in float_names if n.startswith(prefix + ".")]
    if not in_blocks:
        return {"block_name_to_quantize": prefix}
    per_block: dict[str, set[str]] = {}
    for _, idx, rel in parsed:
        per_block.setdefault(idx, set()).add(rel)
    sets = {frozenset(s) for s in per_block.values()}
    if len(sets) != 1:
        raise PTQUserError("the GPTQ format needs the same layers quantized in every block; "
                         f"layers left in float differ between blocks: {in_blocks[:5]}")
    return {"block_name_to_quantize": prefix, "modules_in_block_to_quantize": [sorted(sets.pop())]}


def export_gptq(
    model: nn.Module, directory: str | Path, records: Mapping[str, Any] | None = None,
    tokenizer: Any = None, extra: dict[str, Any] | None = None, checkpoint_format: str | None = None,
    overwrite: bool = False, config_fields: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` in the GPTQ checkpoint format (scales rounded to float16, as the format has them).

    ``checkpoint_format``: ``"gptq"`` (v1, default when every zero point is >= 1),
    ``"gptq_v2"``; ``None`` chooses. ``config_fields`` (e.g. ``damp_percent``,
    ``true_sequential``, ``static_groups``) are added to the ``quantization_config``.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    if checkpoint_format not in (None, *CHECKPOINT_FORMATS):
        raise PTQUserError(f"checkpoint_format must be one of {CHECKPOINT_FORMATS}, got {checkpoint_format!r}")
    qmodules = quantized_modules(model, records, scale_dtype="float16")
    spec = check_gptq_exportable(qmodules)
    zero_free = all(bool((qm.zeros() >= 1).all()) for qm in qmodules.values())  # type: ignore[operator]
    if checkpoint_format is None:
        checkpoint_format = "gptq" if zero_free else "gptq_v2"
        if not zero_free:
            warnings.warn("some zero points are 0, which the GPTQ v1 format cannot store; writing "
                          "checkpoint_format 'gptq_v2' (read by GPTQModel, not by AutoGPTQ)", RuntimeWarning, stacklevel=2)
    elif checkpoint_format == "gptq" and not zero_free:
        raise PTQUserError("some zero points are 0, which checkpoint_format 'gptq' (v1) cannot store; use 'gptq_v2'")
    tensors = float_state(model, qmodules)
    for name, qm in qmodules.items():
        tensors.update({f"{name}.{k}": v for k, v in qlinear_to_gptq(qm, v1=checkpoint_format == "gptq").items()})  # type: ignore[arg-type]
    qc = {
        "quant_method": "gptq", "bits": spec.bits,
        "group_size": spec.group_size if spec.granularity == "group" else -1,
        "desc_act": any(qm.g_idx is not None for qm in qmodules.values()), "sym": spec.symmetric,
        "checkpoint_format": checkpoint_format, "damp_percent": 0.01, "true_sequential": True,
        "static_groups": False, "lm_head": False, "pack_dtype": "int32",
        **_block_layout(list(qmodules), float_linears(model, qmodules)),
        "meta": {"quantizer": [f"ptq:{ptq.__version__}"]}, **(config_fields or {}),
    }
    with atomic_folder(directory, overwrite=overwrite) as tmp:
        write_checkpoint(tmp, tensors, model, qc, tokenizer=tokenizer, extra=extra,
                         json_files={"quantize_config.json": qc})
    return directory


def _decode_zeros(qzeros: torch.Tensor, bits: int, out: int, v1: bool) -> torch.Tensor:
    """Zero points ``[G, out]`` (int64) from packed GPTQ ``qzeros``.

    v1 adds 1 to every field: for 2, 4 and 8 bits word by word (the exact inverse of
    GPTQModel's v2 -> v1 word subtraction, which lets a stored 0 - 1 borrow from the next
    field), for 3 bits field by field (fields straddle words; AutoGPTQ's reading).
    """
    if v1 and 32 % bits == 0:
        ones = pack_codes(torch.ones(qzeros.shape[0], out, dtype=torch.int64), bits)
        qzeros = _to_int32((qzeros.to(torch.int64) & _MASK32) + (ones.to(torch.int64) & _MASK32))
        return unpack_rows(qzeros, bits, out).to(torch.int64)
    return unpack_rows(qzeros, bits, out).to(torch.int64) + (1 if v1 else 0)


def _expect(t: torch.Tensor | None, key: str, shape: tuple[int, ...], dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
    if t is None:
        raise PTQUserError(f"the GPTQ checkpoint lacks {key}")
    if tuple(t.shape) != shape:
        raise PTQUserError(f"tensor {key} has shape {list(t.shape)}, expected {list(shape)}")
    if t.dtype not in dtypes:
        raise PTQUserError(f"tensor {key} has dtype {t.dtype}, expected {' or '.join(map(str, dtypes))}")
    return t


def gptq_to_ptq(qc: dict[str, Any], tensors: dict[str, torch.Tensor], model: nn.Module
                ) -> tuple[dict[str, dict[str, Any]], dict[str, torch.Tensor]]:
    """Module configurations and :class:`QuantLinear` tensors of a GPTQ-format checkpoint."""
    bits, group_size, sym = qc.get("bits"), qc.get("group_size", 128), bool(qc.get("sym", True))
    fmt = qc.get("checkpoint_format", qc.get("format", "gptq"))
    if bits not in GPTQ_BITS:
        raise PTQUserError(f"GPTQ bits must be one of {GPTQ_BITS}, got {bits!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or (group_size < 1 and group_size != -1):
        raise PTQUserError(f"GPTQ group_size must be -1 or positive, got {group_size!r}")
    if fmt not in CHECKPOINT_FORMATS:
        raise PTQUserError(f"unsupported GPTQ checkpoint_format {fmt!r} (supported: {', '.join(CHECKPOINT_FORMATS)})")
    if qc.get("dynamic") or qc.get("pack_dtype", "int32") != "int32":
        raise PTQUserError("GPTQ checkpoints with per-module 'dynamic' overrides or a pack_dtype other than int32 are not supported")
    out_tensors = dict(tensors)
    configs: dict[str, dict[str, Any]] = {}
    for name in [k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")]:
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise PTQUserError(f"the GPTQ checkpoint quantizes {name}, which the model does not have") from exc
        if not is_linear(module):
            raise PTQUserError(f"the GPTQ checkpoint quantizes {name}, a {type(module).__name__}")
        out, n = weight_2d(module).shape
        if n * bits % 32 or out * bits % 32 or (group_size != -1 and n % group_size):
            raise PTQUserError(f"{name} ({n} -> {out}) does not fit {bits}-bit GPTQ packing with group_size {group_size}")
        G = 1 if group_size == -1 else n // group_size
        get = lambda k: out_tensors.pop(f"{name}.{k}", None)  # noqa: E731
        qweight = _expect(get("qweight"), f"{name}.qweight", (n * bits // 32, out), (torch.int32,))
        qzeros = _expect(get("qzeros"), f"{name}.qzeros", (G, out * bits // 32), (torch.int32,))
        scales = _expect(get("scales"), f"{name}.scales", (G, out), (torch.float16, torch.float32))
        g_idx = get("g_idx")
        zeros = _decode_zeros(qzeros, bits, out, v1=fmt == "gptq")
        maxq = (1 << bits) - 1
        if bool((zeros < 0).any()) or bool((zeros > maxq).any()):
            raise PTQUserError(f"{name}.qzeros holds zero points outside [0, {maxq}] (wrong checkpoint_format?)")
        symmetric = sym and bool((zeros == (maxq + 1) // 2).all())
        spec = QuantSpec(bits=bits, symmetric=symmetric, granularity="channel" if group_size == -1 else "group",
                         group_size=None if group_size == -1 else group_size)
        act_order = False
        if g_idx is not None and group_size != -1:
            g_idx = _expect(g_idx, f"{name}.g_idx", (n,), (torch.int32, torch.int64)).to(torch.int32)
            if int(g_idx.min()) < 0 or int(g_idx.max()) >= G:
                raise PTQUserError(f"{name}.g_idx holds groups outside [0, {G})")
            act_order = not torch.equal(g_idx.long(), torch.arange(n) // group_size)
            if act_order:
                out_tensors[f"{name}.g_idx"] = g_idx
        out_tensors[f"{name}.qweight"] = qweight.t().contiguous()
        out_tensors[f"{name}.scales"] = scales.t().contiguous()
        if not symmetric:
            out_tensors[f"{name}.qzeros"] = pack_codes(zeros, bits)
        configs[name] = {"method": "gptq", "kind": "weight_only", **spec.to_dict(), "act_order": act_order,
                         "scale_dtype": str(scales.dtype).removeprefix("torch.")}
    if not configs:
        raise PTQUserError("the GPTQ checkpoint has no quantized layers (no *.qweight tensors)")
    return configs, out_tensors
