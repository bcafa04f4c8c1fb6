"""Checkpoint files: safetensors and JSON only (nothing in a checkpoint is ever executed).

Writing goes to a temporary sibling folder that is renamed onto the target at the end, so
an interrupted save never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from ptq.jsonable import write_json
from ptq.errors import PTQUserError

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")


@contextlib.contextmanager
def atomic_folder(directory: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``directory`` on success."""
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if directory.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(f"{directory} appeared while writing; pass overwrite to replace it")
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(directory)



def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``ValueError`` if it is missing, malformed or not an object."""
    if not path.is_file():
        raise PTQUserError(f"{path} is missing: not a checkpoint folder")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PTQUserError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PTQUserError(f"{path} must hold a JSON object")
    return data


def unique_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop aliases (tied weights): the first name of each shared tensor is kept; all contiguous."""
    seen: set[tuple[int, tuple[int, ...], torch.dtype]] = set()
    out = {}
    for name, t in state.items():
        key = (t.data_ptr(), tuple(t.shape), t.dtype)
        if t.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = t.detach().contiguous()
    return out


def write_checkpoint(
    folder: Path, tensors: dict[str, torch.Tensor], model: nn.Module, quantization_config: dict[str, Any],
    tokenizer: Any = None, extra: dict[str, Any] | None = None, json_files: dict[str, Any] | None = None,
) -> None:
    """Write ``model.safetensors``, ``config.json`` (with ``quantization_config``), the
    generation config, the tokenizer, ``ptq.json`` and any other JSON files into ``folder``."""
    save_file(unique_tensors(tensors), str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    config = copy.deepcopy(model.config)
    config.quantization_config = quantization_config
    config.save_pretrained(folder)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        with contextlib.suppress(Exception):  # a generation config is a convenience, not part of the checkpoint
            gen.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    for name, data in (json_files or {}).items():
        write_json(folder / name, data)
    write_json(folder / "ptq.json", extra if extra is not None else {"quantization_config": quantization_config})


def _load_one(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as exc:
        raise PTQUserError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    except OSError as exc:
        raise PTQUserError(f"cannot read {path}: {exc}") from exc


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of the shards listed in its index (CPU)."""
    if (folder / WEIGHTS_NAME).is_file():
        return _load_one(folder / WEIGHTS_NAME)
    if (folder / INDEX_NAME).is_file():
        weight_map = read_json(folder / INDEX_NAME).get("weight_map")
        if not isinstance(weight_map, dict):
            raise PTQUserError(f"{folder / INDEX_NAME} has no weight_map")
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = (folder / str(shard)).resolve()
            if shard_path.parent != folder.resolve() or not shard_path.name.endswith(".safetensors"):
                raise PTQUserError(f"{folder / INDEX_NAME} names a shard outside the folder: {shard!r}")
            tensors.update(_load_one(shard_path))
        return tensors
    pickled = [n for n in PICKLE_NAMES if (folder / n).exists()]
    if pickled:
        raise PTQUserError(f"{folder} holds only pickle weights ({pickled[0]}); ptq loads safetensors only")
    raise PTQUserError(f"{folder} has no {WEIGHTS_NAME}")
