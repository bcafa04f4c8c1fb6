"""Resume an interrupted calibration run from a work folder: :class:`WorkFolder`.

After every finished block the runner hands the work folder

* the block's state: its tensors (fake-quantized weights, or the codes of the quantized
  modules a step swapped in, with those modules' configs) and its layers' records;
* every step's cross-block state (:meth:`calibration.recipes.step.Step.resume_state`, e.g. the
  alphas SmoothQuant reports at the end);
* the next block's input hidden states,

and rewrites ``progress.json`` last, atomically, with the next block's index and the SHA-256 of
every file it relies on. A run killed at any instant leaves the previous ``progress.json`` or
the new one, never a mix, and a file that does not match its hash (truncated, corrupted, lost
in a power cut) makes the run start over with a warning rather than resume from bad data.

On resume the runner catches block 0's inputs again (embeddings only; the extra arguments of a
block call, masks and positions, are the same for every block), restores blocks ``0..k-1``,
overwrites the hidden states with the saved ones, and goes on at block ``k``. Every saved tensor
is bit-exact, so the result is the same checkpoint, bit for bit, as an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from calibration.runner.block_inputs import BlockInputs
from calibration.runner.context import LayerRecord
from ptq.checkpoint.files import stream_safetensors
from ptq.errors import PTQUserError
from ptq.jsonable import json_default
from ptq.modules.swap import is_qmodule, qmodule_entry, set_submodule

FORMAT = 1
PROGRESS = "progress.json"
RECORD_TENSORS = ("scale", "zero", "g_idx")


class RunInterrupted(Exception):
    """Raised by an ``after_block`` hook to stop the run at a safe point (the block is saved)."""

    def __init__(self, next_block: int, num_blocks: int, reason: str = "interrupted") -> None:
        super().__init__(f"{reason} after block {next_block}/{num_blocks}")
        self.next_block, self.num_blocks, self.reason = next_block, num_blocks, reason


class StaleWorkWarning(UserWarning):
    """The work folder could not be used (another run's, or damaged): the run starts over."""


def run_key(**parts: Any) -> str:
    """A short hash of everything that decides the result (model, recipe, data, dtype, batching)."""
    text = json.dumps(parts, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _encode(value: Any) -> Any:
    """JSON with the non-string dict keys of step states kept (``{"__items__": [[k, v], ...]}``)."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"__items__": [[k, _encode(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__items__"}:
            return {k: _decode(v) for k, v in value["__items__"]}
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _spec_to_json(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    cls = type(spec)
    if not cls.__module__.startswith("ptq.") or not hasattr(spec, "to_dict"):
        raise TypeError(f"cannot save a layer spec of type {cls.__name__} in a work folder")
    return {"module": cls.__module__, "class": cls.__qualname__, "fields": spec.to_dict()}


def _spec_from_json(d: dict[str, Any] | None) -> Any:
    if d is None:
        return None
    import importlib

    if not str(d["module"]).startswith("ptq."):  # only ptq's own number formats, never arbitrary code
        raise PTQUserError(f"work folder names a spec class outside ptq: {d['module']}")
    cls = getattr(importlib.import_module(d["module"]), d["class"])
    return cls.from_dict(d["fields"])


class WorkFolder:
    """The resumable state of one run (see the module docstring).

    Args:
        path: the folder (created on the first save; e.g. a hidden sibling of the output).
        key: :func:`run_key` of the run; a folder holding another key is discarded.
        resume: ``False`` discards whatever the folder holds and starts over.
        after_block: called as ``after_block(next_block, num_blocks)`` once a block is saved: the
            safe point where a hook may raise :class:`RunInterrupted` (signals) or kill the process
            (fault-injection tests).
    """

    def __init__(self, path: str | Path, key: str, resume: bool = True,
                 after_block: Callable[[int, int], None] | None = None) -> None:
        self.path, self.key, self.resume, self.after_block = Path(path), key, resume, after_block
        self.enabled = True
        self._progress: dict[str, Any] | None = None

    # -- starting -------------------------------------------------------------------------------
    def resume_point(self, num_blocks: int, steps: list) -> int:
        """The first block to run: ``k`` when the folder holds a valid partial run of this key, else 0.

        A recipe with a step that cannot resume (``resume_state() is None``) is run without a work folder."""
        if any(s.resume_state() is None for s in steps):
            names = [s.name for s in steps if s.resume_state() is None]
            warnings.warn(f"recipe step(s) {', '.join(names)} keep state across blocks that cannot be saved; "
                          "this run cannot be resumed if interrupted", StaleWorkWarning, stacklevel=2)
            self.enabled = False
            return 0
        progress = self._valid_progress(num_blocks, len(steps)) if self.resume else None
        if progress is None:
            self.remove()  # created again by the first save
            self._progress = {"format": FORMAT, "key": self.key, "blocks": num_blocks, "next_block": 0,
                              "files": {}, "steps": []}
            return 0
        self._progress = progress
        return int(progress["next_block"])

    def _valid_progress(self, num_blocks: int, num_steps: int) -> dict[str, Any] | None:
        file = self.path / PROGRESS
        if not self.path.exists():
            return None
        try:
            progress = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            return self._stale(f"its {PROGRESS} is unreadable ({type(exc).__name__})")
        if not isinstance(progress, dict) or progress.get("format") != FORMAT:
            return self._stale(f"its {PROGRESS} is not a work folder of this ptq version")
        if progress.get("key") != self.key:
            return self._stale("it holds a run of another model, recipe or calibration data", quiet=True)
        if progress.get("blocks") != num_blocks or len(progress.get("steps") or []) not in (0, num_steps):
            return self._stale("its block or step count does not match the model and recipe")
        k = progress.get("next_block")
        if not isinstance(k, int) or not 0 <= k <= num_blocks or not isinstance(progress.get("files"), dict):
            return self._stale(f"its {PROGRESS} is malformed")
        for name, sha in progress["files"].items():
            f = self.path / name
            if not f.is_file() or file_sha256(f) != sha:
                return self._stale(f"{name} is missing or damaged")
        return progress if k > 0 else None

    def _stale(self, why: str, quiet: bool = False) -> None:
        if not quiet:
            warnings.warn(f"work folder {self.path}: {why}; starting over from block 0", StaleWorkWarning, stacklevel=3)
        return None

    # -- restoring ------------------------------------------------------------------------------
    def restore_block(self, index: int, block: nn.Module, prefix: str, records: dict[str, LayerRecord]) -> None:
        """Put block ``index`` back as it was when saved: swapped modules, tensors, records."""
        meta = json.loads((self.path / f"block-{index:05d}.json").read_text())
        device = next(block.parameters()).device
        for rel, cfg in meta["modules"].items():
            float_module = block.get_submodule(rel)
            weight = getattr(float_module, "weight", None)
            dtype = weight.dtype if weight is not None else torch.float32
            qm = qmodule_entry(cfg["config"]["kind"]).cls.from_config(float_module, cfg["config"], dtype=dtype)
            qm.method = cfg.get("method")
            set_submodule(block, rel, qm)
        tensors = self._read(f"block-{index:05d}.safetensors", device)
        state = {k[len("block."):]: v for k, v in tensors.items() if k.startswith("block.")}
        block.load_state_dict(state, strict=True, assign=True)
        for qname, r in meta["records"].items():
            found = {t: tensors.get(f"record.{qname}.{t}") for t in RECORD_TENSORS}
            records[qname] = LayerRecord(method=r["method"], spec=_spec_from_json(r["spec"]), error=r["error"],
                                         info=_decode(r["info"]), **found)

    def restore_steps(self, steps: list) -> None:
        assert self._progress is not None
        for step, state in zip(steps, self._progress["steps"]):
            step.load_resume_state(_decode(state))

    @torch.inference_mode()
    def restore_inputs(self, inputs: BlockInputs) -> BlockInputs:
        """Overwrite ``inputs``' hidden states, in place, with the saved ones of the next block."""
        assert self._progress is not None
        name = f"inputs-{self._progress['next_block']:05d}.safetensors"
        with safe_open(str(self.path / name), framework="pt", device="cpu") as f:
            if len(list(f.keys())) != len(inputs.hidden):
                raise PTQUserError(f"work folder {self.path}: {name} has another number of mini-batches")
            for i, h in enumerate(inputs.hidden):
                saved = f.get_tensor(f"hidden.{i}")
                if saved.shape != h.shape or saved.dtype != h.dtype:
                    raise PTQUserError(f"work folder {self.path}: {name} does not match the calibration batches")
                h.copy_(saved)
                del saved
        return inputs

    def _read(self, name: str, device: torch.device) -> dict[str, torch.Tensor]:
        try:
            with safe_open(str(self.path / name), framework="pt", device=str(device)) as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as exc:
            raise PTQUserError(f"work folder {self.path}: cannot read {name} ({exc}); remove the folder to start over") from exc

    # -- saving ---------------------------------------------------------------------------------
    def save(self, index: int, block: nn.Module, prefix: str, records: dict[str, LayerRecord], steps: list,
             inputs: BlockInputs | None, num_blocks: int) -> None:
        """Save finished block ``index``, the steps' states and the next block's ``inputs``
        (``None`` after the last block), then call ``after_block``."""
        if not self.enabled or self._progress is None:
            if self.after_block is not None:
                self.after_block(index + 1, num_blocks)
            return
        self.path.mkdir(parents=True, exist_ok=True)
        mine = {q: r for q, r in records.items() if q.startswith(f"{prefix}.")}
        tensors = {f"block.{k}": v for k, v in block.state_dict().items()}
        for qname, r in mine.items():
            tensors.update({f"record.{qname}.{t}": getattr(r, t) for t in RECORD_TENSORS if getattr(r, t) is not None})
        files = dict(self._progress["files"])
        files[f"block-{index:05d}.safetensors"] = stream_safetensors(self.path / f"block-{index:05d}.safetensors",
                                                                     tensors)
        meta = {
            "modules": {n: {"config": m.quant_config(), "method": getattr(m, "method", None)}
                        for n, m in block.named_modules() if n and is_qmodule(m)},
            "records": {q: {"method": r.method, "spec": _spec_to_json(r.spec), "error": r.error,
                            "info": _encode(json.loads(json.dumps(r.info, default=json_default)))}
                        for q, r in mine.items()},
        }
        meta_name = f"block-{index:05d}.json"
        files[meta_name] = self._write_json(meta_name, meta)
        old_inputs = [n for n in files if n.startswith("inputs-")]
        if inputs is not None:
            name = f"inputs-{index + 1:05d}.safetensors"
            files[name] = stream_safetensors(self.path / name, {f"hidden.{i}": h for i, h in enumerate(inputs.hidden)})
        for n in old_inputs:
            del files[n]
        states = [json.loads(json.dumps(_encode(s.resume_state()), default=json_default)) for s in steps]
        self._progress = {**self._progress, "next_block": index + 1, "files": files, "steps": states}
        self._write_json(PROGRESS, self._progress)  # the commit point
        for n in old_inputs:
            (self.path / n).unlink(missing_ok=True)
        if self.after_block is not None:
            self.after_block(index + 1, num_blocks)

    def _write_json(self, name: str, data: Any) -> str:
        text = json.dumps(data, indent=1, default=json_default).encode()
        tmp = self.path / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(text)
        tmp.replace(self.path / name)
        return hashlib.sha256(text).hexdigest()

    def remove_if_empty(self) -> None:
        """Delete the folder unless it holds a finished block (a run that failed before block 0 was saved)."""
        if not (self.path / PROGRESS).is_file():
            self.remove()

    def remove(self) -> None:
        """Delete the folder (after the result is written, or to start over)."""
        shutil.rmtree(self.path, ignore_errors=True)
