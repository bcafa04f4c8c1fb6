"""Export to GGUF (llama.cpp, Ollama, LM Studio, ``transformers`` ``gguf_file=``) with the ``gguf``
package's writer, for the Llama architecture.

Quantized layers are written in one block type (``Q4_0``, ``Q4_1`` or ``Q8_0``) whose codes are
ptq's codes (:mod:`ptq.checkpoint.gguf_blocks`); a layer that type cannot hold exactly is refused
with the reason and the types that would fit. Float tensors are stored losslessly in the smallest
of ``Q8_0`` (when the float weight already lies on Q8_0's grid, e.g. a model read from a Q8_0
GGUF), ``F16`` (when every value is a float16 number) and ``F32``; norms are always ``F32``.

Layout as ``convert_hf_to_gguf.py`` writes a Llama: tensor names from ``gguf``'s tensor map
(``blk.N.attn_q.weight`` ...), ``attn_q`` / ``attn_k`` rows permuted per head (``permute``:
``reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2)``; the ``transformers`` GGUF
loader inverts it), with the codes and qparams of each row moving with the row; no
``output.weight`` when the embeddings are tied; ``llama.*`` hyper-parameters from the config.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

import ptq
from ptq.checkpoint.files import atomic_folder, write_json
from ptq.checkpoint.gguf_blocks import QTYPES, BLOCK, misfit, pack_blocks
from ptq.checkpoint.gguf_vocab import add_hf_tokenizer, copy_tokenizer_fields
from ptq.checkpoint.layer_grid import LayerGrid, layer_grid
from ptq.checkpoint.save import float_state
from ptq.modules.quant_linear import QuantLinear, weight_2d
from ptq.modules.swap import quantized_modules
from ptq.errors import PTQUserError

GGUF_NAME = "model.gguf"
ARCHITECTURES = ("llama",)
FILE_TYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7}  # llama.cpp's LLAMA_FTYPE_MOSTLY_*


def head_permutation(rows: int, n_head: int) -> torch.Tensor:
    """Row order of ``convert_hf_to_gguf``'s ``permute`` for ``attn_q`` / ``attn_k`` (rotary halves interleaved)."""
    return torch.arange(rows).reshape(n_head, 2, rows // n_head // 2).swapaxes(1, 2).reshape(-1)


def permute_grid(grid: LayerGrid, perm: torch.Tensor) -> LayerGrid:
    return LayerGrid(grid.codes[perm], grid.scale[perm], grid.zero[perm], grid.group, grid.spec)


def _heads(config: Any, name: str) -> int | None:
    if name.endswith("self_attn.q_proj"):
        return config.num_attention_heads
    if name.endswith("self_attn.k_proj"):
        return getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return None


def check_exportable(qmodules: Mapping[str, nn.Module], qtype: str, config: Any) -> None:
    """``ValueError`` (one line naming what would fit) unless ``qtype`` holds every quantized layer exactly."""
    if qtype not in QTYPES:
        raise PTQUserError(f"unknown GGUF type {qtype!r}; known: {', '.join(QTYPES)}")
    if getattr(config, "model_type", None) not in ARCHITECTURES:
        raise PTQUserError(f"GGUF export supports {', '.join(ARCHITECTURES)} models, not {config.model_type!r}; "
                         "use --format compressed-tensors|gptq|ptq")
    grids = {}
    for name, qm in qmodules.items():
        if not isinstance(qm, QuantLinear):
            raise PTQUserError(f"GGUF holds weight-only grids; {name} is a {type(qm).__name__} (int8 activations or "
                             "outliers): use --format compressed-tensors (W8A8) or ptq")
        grids[name] = layer_grid(qm)
    for name, grid in grids.items():
        why = misfit(grid, qtype)
        if why:
            fits = [t for t in QTYPES if t != qtype and all(misfit(g, t) is None for g in grids.values())]
            hint = f"gguf:{' or gguf:'.join(fits)} fits" if fits else "no GGUF type fits exactly"
            raise PTQUserError(f"{qtype} cannot hold {name} exactly: {why}; {hint} (compressed-tensors, gptq and ptq "
                             "hold any weight-only grid)")


def _float_type(name: str, t: torch.Tensor) -> tuple[np.ndarray, Any]:
    """A float tensor as the smallest lossless GGUF type (norms and 1-D tensors: F32)."""
    import gguf

    a = t.detach().float().cpu().numpy()
    if a.ndim == 2 and a.shape[1] % BLOCK == 0 and "norm" not in name:
        q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
        if np.array_equal(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0), a):
            return q, gguf.GGMLQuantizationType.Q8_0
        if np.array_equal(a.astype(np.float16).astype(np.float32), a):
            return a.astype(np.float16), gguf.GGMLQuantizationType.F16
    return a, gguf.GGMLQuantizationType.F32


def add_hparams(writer: Any, config: Any, qtype: str, name: str) -> None:
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise PTQUserError(f"GGUF export writes plain RoPE; this model has rope_type {rope.get('rope_type')!r}")
    theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(FILE_TYPES[qtype])
    writer.add_quantization_version(2)


def gguf_tensors(model: nn.Module, qmodules: Mapping[str, nn.Module], qtype: str) -> list[tuple[str, np.ndarray, Any]]:
    """``(gguf name, data, type)`` of every tensor, in the model's order."""
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    raw = getattr(gguf.GGMLQuantizationType, qtype)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for name, qm in qmodules.items():
        grid = layer_grid(qm)  # type: ignore[arg-type]
        if (n_head := _heads(config, name)) is not None:
            grid = permute_grid(grid, head_permutation(grid.codes.shape[0], n_head))
        out.append((f"{name}.weight", pack_blocks(grid, qtype), raw))
        if getattr(qm, "bias", None) is not None:
            out.append((f"{name}.bias", qm.bias.detach().float().cpu().numpy(), gguf.GGMLQuantizationType.F32))
    for key, t in float_state(model, qmodules).items():
        if tied and key.startswith("lm_head."):
            continue
        layer = key.rsplit(".", 1)[0]
        if (n_head := _heads(config, layer)) is not None and key.endswith(".weight"):
            t = t[head_permutation(t.shape[0], n_head)]
        out.append((key, *_float_type(key, t)))
    renamed = []
    for key, data, kind in out:
        new = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise PTQUserError(f"GGUF export: no llama.cpp tensor name for {key}")
        renamed.append((new, data, kind))
    return renamed


def export_gguf(
    model: nn.Module, directory: str | Path, qtype: str = "Q4_0", records: Mapping[str, Any] | None = None,
    tokenizer: Any = None, tokenizer_gguf: str | Path | None = None, extra: dict[str, Any] | None = None,
    overwrite: bool = False, name: str | None = None,
) -> Path:
    """Write ``directory/model.gguf`` (and ``ptq.json``): ``model``'s quantized layers as ``qtype`` blocks.

    ``tokenizer_gguf``: a GGUF file whose ``tokenizer.*`` keys are copied (the model's source);
    otherwise they are built from ``tokenizer`` (a BPE fast tokenizer). ``ValueError`` if a
    quantized layer does not fit ``qtype`` exactly.
    """
    import gguf

    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    qmodules = quantized_modules(model, records)
    check_exportable(qmodules, qtype, model.config)
    if tokenizer is None and tokenizer_gguf is None:
        raise PTQUserError("GGUF export needs the tokenizer (the checkpoint folder has none)")
    tensors = gguf_tensors(model, qmodules, qtype)
    with atomic_folder(directory, overwrite=overwrite) as tmp:
        writer = gguf.GGUFWriter(str(tmp / GGUF_NAME), "llama")
        add_hparams(writer, model.config, qtype, name or getattr(model.config, "_name_or_path", "") or "model")
        if tokenizer_gguf is not None:
            copy_tokenizer_fields(tokenizer_gguf, writer)
        else:
            with tempfile.TemporaryDirectory() as tok_dir:
                tokenizer.save_pretrained(tok_dir)
                add_hf_tokenizer(tokenizer, tok_dir, writer, model.config.vocab_size)
        for tname, data, kind in tensors:
            writer.add_tensor(tname, data, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        write_json(tmp / "ptq.json", extra if extra is not None else {"format": f"gguf:{qtype}",
                                                                      "ptq_version": ptq.__version__})
    return directory


def theoretical_bytes(model: nn.Module, qmodules: Mapping[str, nn.Module], qtype: str) -> int:
    """Bytes of the tensor data alone as :func:`gguf_tensors` lays it out (no metadata, no alignment)."""
    return sum(int(data.nbytes) for _, data, _ in gguf_tensors(model, qmodules, qtype))
