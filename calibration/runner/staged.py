"""One forward pass of a block over all calibration mini-batches, paused at given layers.

A step whose statistics for a layer must come from the block as already changed by the step
(GPTQ's true-sequential order: each layer group's Hessian from the outputs of the earlier,
already quantized groups) would otherwise re-run the block from its start once per group, and
once more for the outputs. :func:`run_in_stages` instead runs each mini-batch's forward as a
suspended computation (one worker thread per mini-batch, strictly one running at a time, as
coroutines): every mini-batch runs up to the first *stage* layer, where a forward pre-hook hands
the layer's input to ``on_input`` and pauses; once all mini-batches have paused there,
``after_stage`` runs (e.g. quantizes the group), and each forward resumes with the changed layer
up to the next stage; after the last stage each forward runs to its end and its output replaces
its input in place (the next block's inputs, as :func:`~calibration.runner.block_inputs.advance_block`).
This works for any block without re-writing its forward.

Memory: while paused, each mini-batch's forward holds what its frame holds at that point: the
stage layer's input and the residual stream (for a Llama block about ``B x S x (H + max(H, I))``
values per mini-batch at the MLP output stage, ``I`` the MLP width), for all mini-batches at once.
The worker threads should allocate from glibc's main heap, not heaps of their own, which give freed
tensors back to the OS so that every forward page-faults its activations in again: the ``ptq`` CLI
sets that at its start (:func:`~ptq.kernels.allocator.keep_freed_memory`); the call here covers
programs that did not, as long as no thread of theirs has ended yet. And each thread ends its
OpenMP worker team before it pauses (:func:`~ptq.kernels.openmp.release_openmp_team`): with one idle
team per paused forward, GNU OpenMP makes every kernel of the running thread sleep and wake its workers.
"""
from __future__ import annotations

import threading
from typing import Callable

import torch
from torch import nn

from calibration.runner.block_inputs import BlockInputs, _autocast, block_output
from ptq.kernels.allocator import share_heap_arenas
from ptq.kernels.openmp import release_openmp_team


class _Aborted(BaseException):
    """Unwinds a paused forward whose run is abandoned (a ``BaseException``, so that no
    ``except Exception`` inside a model's forward swallows it)."""


class _Worker(threading.Thread):
    """One mini-batch's forward, run in steps: :meth:`resume` (from the coordinator) lets it run
    until it pauses at a stage (:meth:`pause`, from inside the forward) or finishes."""

    def __init__(self, index: int, forward: Callable[[], None]) -> None:
        super().__init__(name=f"ptq-stage-{index}", daemon=True)
        self.index = index
        self._forward = forward
        self._go = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self.expected = 0  # the stage it must reach next
        self.done = False
        self.abort = False
        self.error: BaseException | None = None

    def run(self) -> None:
        _current.worker = self
        self._go.acquire()
        try:
            if not self.abort:
                self._forward()
        except _Aborted:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the coordinator, which re-raises it
            self.error = e
        finally:
            self.done = True
            self._back.release()

    def pause(self) -> None:
        """From the forward: hand control back and wait to be resumed (or abandoned)."""
        self._back.release()
        self._go.acquire()
        if self.abort:
            raise _Aborted

    def resume(self) -> None:
        """From the coordinator: let the forward run until it pauses or ends."""
        self._go.release()
        self._back.acquire()

    def stop(self) -> None:
        """Abandon the forward (it unwinds at its pause point) and wait for the thread to end."""
        if not self.done:
            self.abort = True
            self._go.release()
        self.join()


_current = threading.local()


def run_in_stages(block: nn.Module, inputs: BlockInputs, stages: list[nn.Module],
                  on_input: Callable[[int, torch.Tensor], None], after_stage: Callable[[int], None],
                  autocast: torch.dtype | None = None, write_outputs: bool = True) -> None:
    """One pass of ``block`` over ``inputs``, paused before each layer of ``stages`` (in call order).

    For stage ``k``: every mini-batch's forward runs until ``stages[k]`` is called, ``on_input(k, x)``
    receives that layer's input (in the forward's thread, while nothing else runs), then the forward
    pauses; when all have paused, ``after_stage(k)`` runs; the forwards continue with the layer as
    ``after_stage`` left it. A stage layer never called by the forward is passed over. Each stage
    layer must be called at most once per forward, in the order of ``stages``.

    ``write_outputs``: each mini-batch's hidden states are replaced in place by the block's outputs
    (``False``: the outputs are dropped). An exception in a forward or in a callback ends every
    forward and is raised here; no thread outlives the call.
    """
    position = {id(m): k for k, m in enumerate(stages)}

    def hook(module: nn.Module, args: tuple) -> None:
        worker = getattr(_current, "worker", None)
        if worker is None:  # the block called outside this run (another thread): not ours
            return
        k = position[id(module)]
        if k != worker.expected:
            raise RuntimeError(f"stage layer {k} was reached while stage {worker.expected} was expected: a one-pass "
                               "run needs each stage layer called once per forward, in a fixed order")
        on_input(k, args[0])
        worker.expected = k + 1
        release_openmp_team()  # a parked thread's idle OpenMP team would slow every other thread's kernels
        worker.pause()

    def forward(h: torch.Tensor, a: tuple, kw: dict) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), _autocast(block, autocast):  # both are per thread
                out = block_output(block(h, *a, **kw))
                if write_outputs:
                    if out.shape != h.shape:
                        raise RuntimeError(f"a decoder block changed the hidden states' shape {tuple(h.shape)} -> "
                                           f"{tuple(out.shape)}")
                    h.copy_(out)
        return run

    workers = [_Worker(i, forward(h, a, kw)) for i, (h, a, kw) in
               enumerate(zip(inputs.hidden, inputs.args, inputs.kwargs))]
    handles = [m.register_forward_pre_hook(hook) for m in stages]
    share_heap_arenas(1)
    try:
        for w in workers:
            w.start()
        for k in range(len(stages) + 1):
            release_openmp_team()  # this thread waits while the forwards run: one OpenMP team at a time
            for w in workers:
                if not w.done:
                    w.resume()
                if w.error is not None:
                    raise w.error
            if k < len(stages):
                after_stage(k)
    finally:
        for w in workers:
            w.stop()
        for h in handles:
            h.remove()
