"""Catch the inputs of the first decoder block, and run one block over them.

A decoder block is called by its model with the hidden states plus whatever else the
architecture needs (attention mask, position ids, rotary position embeddings, cache
position, ...), positionally (GPT-2) or by keyword (Llama, OPT). Rather than rebuilding
those, we run the model once per calibration mini-batch with a pre-hook on block 0 that
records the call and stops the forward pass. Every later block is called with the same
extra arguments and the previous block's outputs as hidden states.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from ptq.errors import PTQUserError


class StopForward(Exception):
    """Raised by a hook to end a forward pass early: the catching hook once block 0's inputs
    are recorded; an observing hook once every observed layer has had its input."""


@dataclass
class BlockInputs:
    """Inputs of one decoder block for each calibration mini-batch.

    ``hidden[i]`` is the hidden-state tensor ``[B, S, H]`` of mini-batch ``i``;
    ``args[i]`` / ``kwargs[i]`` the other positional / keyword arguments of the call.
    """

    hidden: list[torch.Tensor] = field(default_factory=list)
    args: list[tuple] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hidden)

    @property
    def num_samples(self) -> int:
        return sum(h.shape[0] for h in self.hidden)

    def to(self, device: torch.device) -> "BlockInputs":
        return BlockInputs(
            hidden=[h.to(device) for h in self.hidden],
            args=[to_device(a, device) for a in self.args],
            kwargs=[to_device(k, device) for k in self.kwargs],
        )

    def batches(self, start: int, stop: int | None = None) -> "BlockInputs":
        """Mini-batches ``start:stop`` (views of the same tensors)."""
        return BlockInputs(hidden=self.hidden[start:stop], args=self.args[start:stop], kwargs=self.kwargs[start:stop])

    def with_hidden(self, hidden: list[torch.Tensor]) -> "BlockInputs":
        """Same extra arguments, new hidden states (the next block's inputs)."""
        return BlockInputs(hidden=hidden, args=self.args, kwargs=self.kwargs)


def to_device(value: Any, device: torch.device) -> Any:
    """Move tensors inside nested tuples / lists / dicts to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


@torch.inference_mode()
def catch_block_inputs(
    model: nn.Module, first_block: nn.Module, segments: torch.Tensor, batch_size: int
) -> BlockInputs:
    """Record the inputs of ``first_block`` for ``segments`` ([N, seqlen] token ids)."""
    inputs = BlockInputs()

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if args:
            hidden, rest = args[0], tuple(args[1:])
        else:
            kwargs = dict(kwargs)
            hidden, rest = kwargs.pop("hidden_states"), ()
        kwargs = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "past_key_value", "layer_past")}
        kwargs["use_cache"] = False
        inputs.hidden.append(hidden.detach())
        inputs.args.append(rest)
        inputs.kwargs.append(kwargs)
        raise StopForward

    device = next(model.parameters()).device
    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for start in range(0, segments.shape[0], batch_size):
            batch = segments[start : start + batch_size].to(device)
            try:
                model(input_ids=batch, use_cache=False)
            except StopForward:
                pass
            else:  # pragma: no cover - the hook always fires for a decoder block
                raise RuntimeError("the first decoder block was not called by the model's forward")
    finally:
        handle.remove()
    return inputs


def block_output(out: Any) -> torch.Tensor:
    """Hidden states from a block's return value (a tensor, or a tuple in older transformers)."""
    return out[0] if isinstance(out, (tuple, list)) else out


AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(name: str | None) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a name (``None``: no autocast, the model's own dtype)."""
    if name is None:
        return None
    if name not in AUTOCAST_DTYPES:
        raise PTQUserError(f"autocast must be one of {', '.join(AUTOCAST_DTYPES)} (or none), got {name!r}")
    return AUTOCAST_DTYPES[name]


def native_cpu_dtype(dtype: torch.dtype) -> bool:
    """Whether this CPU computes ``dtype`` matmuls natively (AVX-512 BF16 / FP16, AMX); without
    it oneDNN emulates them, slower than float32 (``docs/results.md``)."""
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    try:
        return bool(getattr(torch.ops.mkldnn, check)()) if check else True
    except (AttributeError, RuntimeError):
        return True  # cannot tell: assume the user knows their CPU


def _autocast(block: nn.Module, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the block's forward: matmuls in ``dtype``, weights and the residual
    stream as they are (``torch.autocast``); a no-op for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    device = next(block.parameters(), torch.empty(0)).device
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def run_block(block: nn.Module, inputs: BlockInputs, autocast: torch.dtype | None = None) -> list[torch.Tensor]:
    """Outputs of ``block`` for every mini-batch of ``inputs`` (under ``torch.autocast`` to ``autocast``)."""
    with _autocast(block, autocast):
        return [
            block_output(block(h, *a, **k)) for h, a, k in zip(inputs.hidden, inputs.args, inputs.kwargs)
        ]


@torch.inference_mode()
def advance_block(block: nn.Module, inputs: BlockInputs, autocast: torch.dtype | None = None) -> BlockInputs:
    """``inputs`` with each mini-batch's hidden states replaced, in place, by ``block``'s outputs
    (the next block's inputs): a mini-batch's input is not needed once its output exists, so
    only one copy of the calibration activations is ever held."""
    with _autocast(block, autocast):
        for h, a, k in zip(inputs.hidden, inputs.args, inputs.kwargs):
            out = block_output(block(h, *a, **k))
            if out.shape != h.shape:
                raise RuntimeError(f"a decoder block changed the hidden states' shape {tuple(h.shape)} -> "
                                   f"{tuple(out.shape)}")
            h.copy_(out)
            del out
    return inputs


@torch.inference_mode()
def feed_block(block: nn.Module, inputs: BlockInputs, autocast: torch.dtype | None = None) -> None:
    """Run ``block`` on every mini-batch for its hooks' sake, discarding the outputs; a hook
    may end a mini-batch's forward early by raising :class:`StopForward`."""
    with _autocast(block, autocast):
        for h, a, k in zip(inputs.hidden, inputs.args, inputs.kwargs):
            try:
                block(h, *a, **k)
            except StopForward:
                pass
