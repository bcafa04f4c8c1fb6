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
        apply_umask(tmp)
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


def current_umask() -> int:
    """This process's file mode creation mask (read from ``/proc/self/status`` when it can be, so the
    mask is never changed, not even for an instant; else set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(folder: Path) -> None:
    """Give every file under ``folder`` the mode a plain ``open()`` would: ``0o666 & ~umask``.

    Writers that go through a private temporary file (``safetensors.save_file``,
    :func:`tempfile.mkstemp`) leave 0600 behind, so a checkpoint copied to a shared folder or a
    serving container could not be read by another user; folders get ``0o777 & ~umask``."""
    mask = current_umask()
    for root, dirs, names in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in names:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


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
    write_metadata(folder, model, quantization_config, tokenizer, extra, json_files)


def write_metadata(
    folder: Path, model: nn.Module, quantization_config: dict[str, Any], tokenizer: Any = None,
    extra: dict[str, Any] | None = None, json_files: dict[str, Any] | None = None,
) -> None:
    """Everything of a checkpoint but its tensors: ``config.json`` (with ``quantization_config``), the
    generation config, the tokenizer, ``ptq.json`` and any other JSON files."""
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


SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


def stream_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write ``tensors`` as a safetensors file one tensor at a time and return the file's SHA-256.

    ``safetensors.torch.save_file`` first turns every tensor into a ``bytes`` copy, so saving
    calibration activations would double them in memory; here each (contiguous, CPU) tensor's
    bytes go straight from its storage to the file. The format is the published one: an 8-byte
    little-endian header length, a JSON header of dtypes, shapes and byte offsets (padded with
    spaces to 8 bytes), then the raw data. The file is written under a temporary name and renamed.
    """
    import hashlib

    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"tensor {name}: dtype {t.dtype} has no safetensors name")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    digest = hashlib.sha256()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for chunk in (len(head).to_bytes(8, "little"), head):
                f.write(chunk)
                digest.update(chunk)
            for t in tensors.values():
                if t.numel():
                    data = memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
                    f.write(data)
                    digest.update(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest()
