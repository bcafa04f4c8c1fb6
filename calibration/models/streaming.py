"""A model larger than memory: built on the ``meta`` device, its decoder blocks read one at a time
from the safetensors shards on disk (:class:`StreamedModel`).

The model is built from its ``config.json`` with every parameter on ``meta`` (no bytes;
``accelerate.init_empty_weights``, buffers such as rotary frequencies computed for real); the
tensors outside the blocks that a forward pass needs before block 0 (the input embedding and
whatever else is not the output head) are read once, and each block's tensors are read when the
block is loaded and set back to ``meta`` when it is released. Tensors are read with
``safetensors.safe_open`` (memory-mapped; the index json says which shard holds which tensor),
copied into memory of their own in the model's dtype, and the file pages the copy read are given
back at once (``madvise``, :mod:`calibration.models.owned`): a mapped page still counts in the
resident set while any tensor of the same file lives, so without that the pages of every block
read so far would stay resident. The input embedding alone stays mapped, as in
:func:`~calibration.models.loading.load_model`: only the rows of the tokens a pass reads are paged in.

The same class reads a ptq checkpoint (packed blocks, :mod:`ptq.checkpoint.load`) for a streamed
evaluation: its quantized layers are empty skeletons until their block is loaded.
"""
from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from calibration.models.blocks import find_decoder_blocks
from calibration.models.owned import file_mappings, release_file_pages
from ptq.checkpoint.files import INDEX_NAME, WEIGHTS_NAME, read_json
from ptq.errors import PTQUserError
from ptq.layers import resolve_dtype


class ShardedTensors:
    """Which safetensors file of a folder holds each tensor (``model.safetensors`` or the shards of
    ``model.safetensors.index.json``); reads a set of tensors, one shard open at a time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if (self.folder / INDEX_NAME).is_file():
            weight_map = read_json(self.folder / INDEX_NAME).get("weight_map")
            if not isinstance(weight_map, dict):
                raise PTQUserError(f"{self.folder / INDEX_NAME} has no weight_map")
            self.files = {str(k): self._inside(str(v)) for k, v in weight_map.items()}
        elif (self.folder / WEIGHTS_NAME).is_file():
            from safetensors import safe_open

            with safe_open(str(self.folder / WEIGHTS_NAME), framework="pt", device="cpu") as f:
                self.files = dict.fromkeys(f.keys(), self.folder / WEIGHTS_NAME)
        else:
            raise PTQUserError(f"{self.folder} has no {WEIGHTS_NAME} or {INDEX_NAME}: streaming reads safetensors "
                               "folders only")

    def _inside(self, shard: str) -> Path:
        if Path(shard).name != shard or shard in (".", "..") or not shard.endswith(".safetensors"):
            raise PTQUserError(f"{self.folder / INDEX_NAME} names a shard outside the folder: {shard!r}")
        return self.folder / shard  # a shard may be a link (a folder of links to another model's shards)

    def names(self) -> list[str]:
        return list(self.files)

    def read(self, names: Iterable[str], dtypes: dict[str, torch.dtype] | None = None,
             mapped: Iterable[str] = ()) -> dict[str, torch.Tensor]:
        """Tensors ``names`` on the CPU, each in ``dtypes[name]`` when given and floating (else as stored),
        in memory of their own; the names in ``mapped`` stay views of the file (read lazily)."""
        from safetensors import SafetensorError, safe_open

        names, keep = list(names), set(mapped)
        missing = [n for n in names if n not in self.files]
        if missing:
            raise PTQUserError(f"{self.folder}: the checkpoint lacks tensor(s) {missing[:3]}")
        by_file: dict[Path, list[str]] = {}
        for n in names:
            by_file.setdefault(self.files[n], []).append(n)
        out: dict[str, torch.Tensor] = {}
        mappings: list[tuple[int, int]] | None = None
        for path, group in by_file.items():
            try:
                with ExitStack() as stack:
                    f = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
                    for n in group:
                        t = f.get_tensor(n)
                        want = (dtypes or {}).get(n)
                        convert = want is not None and t.is_floating_point() and want.is_floating_point and t.dtype != want
                        if n in keep and not convert:
                            out[n] = t
                            continue
                        out[n] = t.to(want) if convert else t.clone()
                        mappings = mappings if mappings is not None else file_mappings()
                        release_file_pages(t, mappings)
                        del t
            except (SafetensorError, OSError) as exc:
                raise PTQUserError(f"cannot read {path} (truncated or corrupt?): {exc}") from exc
        return out


def empty_causal_lm(config: Any, dtype: torch.dtype) -> nn.Module:
    """The causal LM of a ``transformers`` config with its parameters on ``meta`` (buffers computed)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def meta_state(module: nn.Module, names: Iterable[str]) -> None:
    """Set the named parameters / buffers of ``module`` (relative names) back to ``meta``: their memory is
    freed and the module keeps its structure, ready to be loaded again."""
    for name in names:
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if attr in owner._parameters and owner._parameters[attr] is not None:
            p = owner._parameters[attr]
            owner._parameters[attr] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
        elif attr in owner._buffers and owner._buffers[attr] is not None:
            owner._buffers[attr] = torch.empty_like(owner._buffers[attr], device="meta")
    for sub in module.modules():  # derived caches (a quantized layer's dequantized weight) go too
        for key in [k for k in sub.__dict__ if k.startswith("_derived_")]:
            del sub.__dict__[key]


class StreamedModel:
    """A causal LM whose decoder blocks live on disk until loaded (module docstring).

    Args:
        folder: a Hugging Face model folder of safetensors (one file or shards with an index).
        model: the model built from the folder's config on ``meta`` (a float model, or a quantized
            checkpoint's model with its layers swapped for empty skeletons).
        dtype: the dtype float tensors are read in (tensors of quantized layers keep theirs).

    Attributes: ``model``, ``prefix`` / ``blocks`` (the decoder-block list), ``tensors`` (the shards).
    """

    def __init__(self, folder: str | Path, model: nn.Module, dtype: str | torch.dtype = "float32") -> None:
        self.folder, self.model, self.dtype = Path(folder), model, resolve_dtype(dtype)
        self.tensors = ShardedTensors(folder)
        self.prefix, self.blocks = find_decoder_blocks(model)
        expected = model.state_dict(keep_vars=True)
        self._dtypes = {k: v.dtype for k, v in expected.items()}
        unknown = sorted(set(self.tensors.names()) - set(expected))
        if unknown:  # as from_pretrained: e.g. the rotary inv_freq older Llama checkpoints kept
            warnings.warn(f"{self.folder}: ignoring {len(unknown)} checkpoint tensor(s) the model does not have: "
                          f"{unknown[:3]}", RuntimeWarning, stacklevel=2)
            self.tensors.files = {k: v for k, v in self.tensors.files.items() if k in expected}

    @classmethod
    def from_folder(cls, folder: str | Path, dtype: str | torch.dtype = "float32") -> "StreamedModel":
        """A float model folder on ``meta``; call :meth:`load_resident` before a forward pass."""
        from calibration.plan.shapes import load_config

        config, _ = load_config(str(folder))
        if getattr(config, "ptq_quantization", None):
            raise PTQUserError(f"{folder} is a quantized checkpoint; quantize its float model instead")
        if hasattr(config, "ptq_quantization"):
            del config.ptq_quantization  # load_config's note of a quantization_config; not part of the model
        return cls(folder, empty_causal_lm(config, resolve_dtype(dtype)), dtype)

    @classmethod
    def from_checkpoint(cls, folder: str | Path, dtype: str | torch.dtype = "float32") -> "StreamedModel":
        """A ptq checkpoint (``quant_method`` ptq) on ``meta``, its quantized layers empty skeletons."""
        from ptq.checkpoint.config import QUANT_METHOD, parse_quantization_config
        from ptq.checkpoint.load import empty_model, swap_skeletons

        torch_dtype = resolve_dtype(dtype)
        config_dict = read_json(Path(folder) / "config.json")
        qc = config_dict.get("quantization_config")
        if not isinstance(qc, dict) or qc.get("quant_method") != QUANT_METHOD:
            raise PTQUserError(f"{folder}: streaming reads ptq checkpoints (quant_method ptq); a GPTQ-format folder "
                               "loads whole")
        model = empty_model(config_dict, torch_dtype)
        swap_skeletons(model, parse_quantization_config(qc, model), torch_dtype)
        return cls(folder, model, torch_dtype)

    # -- names --------------------------------------------------------------------------------------
    def block_prefix(self, index: int) -> str:
        return f"{self.prefix}.{index}"

    def block_names(self, index: int) -> list[str]:
        """Relative names of block ``index``'s tensors in the checkpoint."""
        p = f"{self.block_prefix(index)}."
        return [n[len(p):] for n in self.tensors.names() if n.startswith(p)]

    def outside_names(self) -> list[str]:
        """Checkpoint tensors outside the decoder blocks (embedding, final norm, head)."""
        p = f"{self.prefix}."
        return [n for n in self.tensors.names() if not n.startswith(p)]

    def head_names(self) -> list[str]:
        """The output head's tensors when it is not tied to the input embedding (needed only for logits)."""
        out = self.model.get_output_embeddings()
        emb = self.model.get_input_embeddings()
        if out is None or out.weight is emb.weight:
            return []
        head = next((n for n, m in self.model.named_modules() if m is out), None)
        return [n for n in self.outside_names() if head is not None and n.startswith(f"{head}.")]

    # -- loading ------------------------------------------------------------------------------------
    def _assign(self, module: nn.Module, prefix: str, names: list[str], device: torch.device | str,
                mapped: Iterable[str] = ()) -> None:
        full = [f"{prefix}{n}" for n in names]
        state = self.tensors.read(full, {f: self._dtypes[f] for f in full}, mapped=mapped)
        for f, t in state.items():
            e = self._dtypes[f]
            if (t.dtype != e) and not (t.is_floating_point() and e.is_floating_point):
                raise PTQUserError(f"tensor {f} has dtype {t.dtype}, expected {e}")
        local = {n: state[f].to(device) for n, f in zip(names, full)}
        module.load_state_dict(local, strict=False, assign=True)

    def load_resident(self, device: torch.device | str = "cpu", head: bool = True) -> None:
        """Read the tensors outside the blocks (``head=False``: all but an untied output head, which only
        logits need); the input embedding stays mapped. Ties tied weights."""
        skip = set() if head else set(self.head_names())
        names = [n for n in self.outside_names() if n not in skip]
        emb = self.model.get_input_embeddings()
        emb_name = next((f"{n}.weight" for n, m in self.model.named_modules() if m is emb), None)
        self._assign(self.model, "", names, device, mapped=[emb_name] if emb_name else [])
        self.model.tie_weights()

    def release_head(self) -> None:
        meta_state(self.model, self.head_names())

    def load_block(self, index: int, device: torch.device | str = "cpu") -> nn.Module:
        """Read block ``index`` from disk onto ``device``; every tensor of the block must be there."""
        block = self.blocks[index]
        names = self.block_names(index)
        self._assign(block, f"{self.block_prefix(index)}.", names, device)
        left = [n for n, t in block.state_dict(keep_vars=True).items() if t.is_meta]
        if left:
            raise PTQUserError(f"{self.folder}: block {index} lacks tensor(s) {left[:3]}")
        return block

    def release_block(self, index: int) -> None:
        """Block ``index`` back to ``meta`` (its memory freed; quantized modules swapped in stay, empty)."""
        block = self.blocks[index]
        meta_state(block, [n for n, _ in block.named_parameters()] + [n for n, _ in block.named_buffers()
                                                                      if n in block.state_dict()])

    def resident_bytes(self) -> int:
        """Bytes of tensors outside ``meta`` (what the model holds in memory now, mapped ones included)."""
        seen, total = set(), 0
        for t in [*self.model.parameters(), *self.model.buffers()]:
            if not t.is_meta and id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
        return total
