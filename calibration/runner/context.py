"""What a recipe step sees of the decoder block being quantized: :class:`BlockContext`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from calibration import distributed
from calibration.models.blocks import find_linear_layers
from calibration.runner.block_inputs import BlockInputs, StopForward, feed_block, run_block
from calibration.runner.spread import first_samples_here, reduce_statistics
from ptq.errors import PTQUserError
from ptq.kernels.finite import all_finite


def _first_rows(value: Any, batch: int, k: int) -> Any:
    """``value`` with every tensor of 2 or more dimensions whose first one is the mini-batch (``batch``)
    cut to its first ``k`` rows (masks, position ids; broadcast ``[1, ...]`` tensors stay whole)."""
    if isinstance(value, torch.Tensor):
        return value[:k] if value.dim() >= 2 and value.shape[0] == batch else value
    if isinstance(value, (tuple, list)):
        return type(value)(_first_rows(v, batch, k) for v in value)
    if isinstance(value, dict):
        return {key: _first_rows(v, batch, k) for key, v in value.items()}
    return value


def check_finite_input(x: torch.Tensor, qname: str) -> None:
    """:class:`PTQUserError` when the calibration input ``x`` of layer ``qname`` holds NaN or inf."""
    if not all_finite(x):
        raise PTQUserError(f"the input of layer {qname} contains NaN or inf during calibration; "
                           "check the model's dtype (float16 overflows) or the previous quantization steps")


class Statistic(Protocol):
    """Anything fed a layer's input activations (observers, Hessian accumulators)."""

    def update(self, x: torch.Tensor) -> None: ...


@dataclass
class LayerRecord:
    """What happened to one linear layer: method, spec, qparams, error, notes."""

    method: str
    spec: Any = None  # ptq.QuantSpec of the weight
    scale: torch.Tensor | None = None
    zero: torch.Tensor | None = None
    g_idx: torch.Tensor | None = None
    error: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.spec is not None:
            out["spec"] = self.spec.to_dict()
        if self.error is not None:
            out["error"] = self.error
        out.update(self.info)
        return out


@dataclass
class BlockContext:
    """One decoder block during calibration.

    Attributes:
        block: the block (on the compute device).
        index: its position among the decoder blocks; ``prefix`` its qualified name.
        inputs: its calibration inputs (the previous, already quantized, block's outputs).
        records: where steps write a :class:`LayerRecord` per qualified layer name.
        autocast: ``torch.autocast`` dtype of every forward pass through the block (``None``:
            the block's own dtype). Weights, and so every step's solve, stay as they are.
        advanced: set by a step that has already replaced ``inputs``' hidden states in place by the
            block's final outputs (a one-pass step, :mod:`calibration.runner.staged`), so the runner
            does not re-run the block; the runner clears it before each step.
        next_hidden: the next block's hidden states, kept by a step whose statistics come from the
            float model (``observe_inputs(..., keep_outputs=True)``): the runner makes them the next
            block's inputs instead of re-running the block, whatever later steps change.
    """

    block: nn.Module
    index: int
    prefix: str
    inputs: BlockInputs
    records: dict[str, LayerRecord]
    autocast: torch.dtype | None = None
    advanced: bool = False
    next_hidden: list[torch.Tensor] | None = None
    _float_outputs: list[torch.Tensor] | None = None

    def on_batches(self, stop: int, records: dict[str, LayerRecord] | None = None,
                   autocast: torch.dtype | None | str = "same") -> "BlockContext":
        """This block restricted to its first ``stop`` calibration mini-batches: a probe.

        ``records``: where the probe's records go (default: a fresh dict, so a probe leaves nothing in
        the run's records). ``autocast``: the probe's ``torch.autocast`` dtype (default: this context's).
        """
        return BlockContext(block=self.block, index=self.index, prefix=self.prefix, inputs=self.inputs.batches(0, stop),
                            records={} if records is None else records,
                            autocast=self.autocast if autocast == "same" else autocast)  # type: ignore[arg-type]

    def linear_layers(self) -> dict[str, nn.Module]:
        """Linear sub-layers by name relative to the block (``self_attn.q_proj``)."""
        return find_linear_layers(self.block)

    def qualified(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def record(self, name: str, rec: LayerRecord) -> None:
        """Write ``rec`` as layer ``name``'s record, keeping the notes earlier steps left in its
        info (e.g. SmoothQuant's alpha under a later GPTQ or W8A8 record; the new keys win)."""
        old = self.records.get(self.qualified(name))
        if old is not None:
            rec.info = {**old.info, **rec.info}
        self.records[self.qualified(name)] = rec

    def first_samples(self, nsamples: int, local: bool = False) -> "BlockContext":
        """This context restricted to the mini-batches holding the first ``nsamples`` segments
        (``0`` or at least all of them: ``self``); searches that score many candidates use it.

        In a data-parallel run the first ``nsamples`` segments of the whole run (each rank keeps
        those of its share, maybe none; :func:`calibration.runner.spread.first_samples_here`), so that
        a search whose losses are summed over the ranks sees one process's segments; ``local``:
        this rank's own first ``nsamples``.
        """
        if not local and nsamples and distributed.active():
            here = first_samples_here(nsamples, self.inputs.num_samples)
            if here == 0:
                return BlockContext(block=self.block, index=self.index, prefix=self.prefix,
                                    inputs=self.inputs.batches(0, 0), records=self.records, autocast=self.autocast)
            nsamples = here
        if not nsamples or nsamples >= self.inputs.num_samples:
            return self
        per_batch = self.inputs.hidden[0].shape[0]
        sub = self.inputs.batches(0, -(-nsamples // per_batch))
        last = nsamples - per_batch * (len(sub) - 1)  # samples wanted from the last mini-batch
        if last < sub.hidden[-1].shape[0]:
            B = sub.hidden[-1].shape[0]
            sub.hidden[-1] = sub.hidden[-1][:last]
            sub.args[-1] = _first_rows(sub.args[-1], B, last)
            sub.kwargs[-1] = _first_rows(sub.kwargs[-1], B, last)
        return BlockContext(block=self.block, index=self.index, prefix=self.prefix, inputs=sub, records=self.records,
                            autocast=self.autocast)

    def run(self) -> list[torch.Tensor]:
        """The block's outputs for all calibration mini-batches, as it is now."""
        return run_block(self.block, self.inputs, self.autocast)

    def float_outputs(self) -> list[torch.Tensor]:
        """Outputs before any step of this block changed it (computed on first use)."""
        if self._float_outputs is None:
            self._float_outputs = self.run()
        return self._float_outputs

    @torch.inference_mode()
    def observe_inputs(
        self, layer_names: list[str], make_stat: Callable[[str, nn.Module], Statistic], reduce: bool = True,
        keep_outputs: bool = False,
    ) -> dict[str, Statistic]:
        """Run the block over the calibration data and feed each named layer's input to a statistic.

        ``make_stat(name, layer)`` builds one statistic per layer; its ``update`` receives the
        layer's input activations ``[B, S, in_features]`` of every mini-batch. When each
        observed layer runs once per forward (as in every decoder block), the passes after the
        first stop right after the last of them has its input: the rest of the block (the
        ``down_proj`` matmul and everything after it, when all layers are observed) is not run.
        In a data-parallel run each statistic is then reduced over the ranks
        (:func:`calibration.runner.spread.reduce_statistics`) unless ``reduce`` is false (the caller
        reduces what the statistics fed, as GPTQ's Hessians).

        ``keep_outputs``: every pass runs to the block's end and its outputs (of the block as it is
        now) become :attr:`next_hidden`, so that this one pass also gives the next block's inputs.
        """
        layers = self.linear_layers()
        unknown = [n for n in layer_names if n not in layers]
        if unknown:
            raise ValueError(f"block {self.prefix} has no linear layer(s) {unknown}")
        stats = {name: make_stat(name, layers[name]) for name in layer_names}
        calls: dict[str, int] = dict.fromkeys(layer_names, 0)
        order: list[str] = []  # first-call order in the first mini-batch
        stop_after: list[str] = []  # the layer whose input ends later passes early, if any

        checked: list[torch.Tensor] = []  # the last input checked (q/k/v, gate/up share one tensor)

        def hook(module: nn.Module, args: tuple, name: str) -> None:
            x = args[0]
            if not (checked and checked[0] is x):
                check_finite_input(x, self.qualified(name))
            checked[:] = [x]
            stats[name].update(x)
            if not calls[name]:
                order.append(name)
            calls[name] += 1
            if stop_after and name == stop_after[0]:
                raise StopForward  # nothing observed comes later in this pass: skip the rest of the block

        handles = [layers[n].register_forward_pre_hook(lambda m, a, n=n: hook(m, a, n)) for n in layer_names]
        try:
            if keep_outputs:
                self.next_hidden = run_block(self.block, self.inputs, self.autocast)
            else:
                feed_block(self.block, self.inputs.batches(0, 1), self.autocast)
                if order and all(c == 1 for c in calls.values()):  # each observed layer runs once per pass
                    stop_after.append(order[-1])
                feed_block(self.block, self.inputs.batches(1), self.autocast)
        finally:
            for h in handles:
                h.remove()
            checked.clear()
        if reduce:
            reduce_statistics(stats)
        return stats
