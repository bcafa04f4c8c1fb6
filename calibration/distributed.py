"""The process group of a data-parallel run under ``torchrun``, and the collectives ptq uses.

``torchrun --nproc-per-node N -m scripts.cli quantize ...`` starts N processes whose environment
holds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init` joins them into one ``torch.distributed`` process group (gloo on the CPU, nccl on
CUDA) with a timeout on every collective. Without those variables (or with one process) nothing
is created and every helper here is a no-op on one process: ``rank() == 0``, ``world_size() == 1``,
reductions return their input.

Data parallelism (as in ``DistributedDataParallel``, and as the GPTQ / observer statistics allow):
each rank takes a contiguous share of the calibration segments or evaluation windows
(:func:`share`), every statistic is summed (or maxed, or merged) over the ranks before it is used,
so that the ranks agree on every decision, and the ranks' results equal one process's up to the
order of float additions.

A collective that fails (a rank died: gloo's connection closes; a rank hangs: the timeout) raises
:class:`RankLost`, a one-line user-facing error that says what to do.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist

from ptq.errors import PTQUserError

DEFAULT_TIMEOUT_S = 300.0
ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
TEST_EXIT = "PTQ_DIST_TEST_EXIT"  # tests only: "RANK:N" makes that rank os._exit at its N-th collective
_calls = [0]


class RankLost(PTQUserError):
    """A collective failed: another rank died, or stopped answering within the timeout."""


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or the same environment) with more than one rank."""
    return all(k in os.environ for k in ENV) and int(os.environ["WORLD_SIZE"]) > 1


def active() -> bool:
    """Whether a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that prints and writes."""
    return rank() == 0


def init(timeout_s: float = DEFAULT_TIMEOUT_S, device: str | None = None) -> bool:
    """Join the ``torchrun`` process group (gloo, or nccl for a CUDA ``device``); ``False`` (and nothing
    done) when not launched by ``torchrun``. Every later collective fails after ``timeout_s`` seconds."""
    if not launched() or active():
        return active()
    if not timeout_s > 0:
        raise PTQUserError(f"--dist-timeout must be a positive number of seconds, got {timeout_s}")
    if not dist.is_available():
        raise PTQUserError("this torch build has no torch.distributed; run one process (without torchrun)")
    cuda = device is not None and str(device).startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as exc:
        raise RankLost(f"rank {os.environ['RANK']}: could not join the {os.environ['WORLD_SIZE']} processes at "
                       f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({_first_line(exc)}); check that "
                       "every rank was started with the same --rdzv-endpoint / master address") from exc
    return True


def destroy() -> None:
    """Leave the process group (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    """The first line of an error, without gloo's ``[file.cc:123]`` prefix, at most 160 characters."""
    text = str(exc).strip().splitlines()
    line = re.sub(r"^\[[^\]]*\]\s*", "", text[0]) if text else type(exc).__name__
    return line[:160].rstrip(" .")


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Run one collective; a failure (dead peer, timeout) becomes :class:`RankLost`."""
    _calls[0] += 1
    hook = os.environ.get(TEST_EXIT, "")
    if hook and hook.split(":")[0] == str(rank()) and _calls[0] >= int(hook.split(":")[1]):
        os._exit(17)  # tests only: this rank dies mid-run without a word
    try:
        yield
    except RuntimeError as exc:  # gloo / nccl errors (DistBackendError, timeouts) are RuntimeErrors
        raise RankLost(f"rank {rank()} of {world_size()}: {what} failed ({_first_line(exc)}): another rank died "
                       "or stopped answering within --dist-timeout (see that rank's own output); nothing was "
                       "written; rerun the whole torchrun command") from exc


def barrier(what: str = "waiting for the other ranks") -> None:
    if active():
        with _collective(what):
            dist.barrier()


def all_reduce_(t: torch.Tensor, op: str = "sum", what: str = "reducing statistics") -> torch.Tensor:
    """``t`` replaced in place by its sum (``op="sum"``) or maximum (``"max"``) over the ranks."""
    if active():
        on = t
        if dist.get_backend() == "nccl" and t.device.type != "cuda":  # nccl reduces device tensors only
            on = t.to(torch.device("cuda", torch.cuda.current_device()))
        with _collective(what):
            dist.all_reduce(on, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
        if on is not t:
            t.copy_(on)
    return t


def sum_floats(*values: float, what: str = "reducing a loss") -> list[float]:
    """Each value summed over the ranks (in float64)."""
    t = torch.tensor(values, dtype=torch.float64)
    return all_reduce_(t, "sum", what).tolist()


def all_gather_objects(obj: Any, what: str = "gathering statistics") -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    with _collective(what):
        dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int, what: str = "sharing results") -> Any:
    """Rank ``src``'s ``obj`` on every rank (others pass anything, e.g. ``None``)."""
    if not active():
        return obj
    box = [obj]
    with _collective(what):
        dist.broadcast_object_list(box, src=src)
    return box[0]


def share(n: int, world: int | None = None, at: int | None = None) -> tuple[int, int]:
    """``(start, stop)`` of rank ``at``'s contiguous share of ``n`` items: ``[r n // W, (r + 1) n // W)``.

    Contiguous shares concatenated in rank order are the items in order, so anything gathered
    from the ranks in rank order (token rows, window results) is in one process's order.
    """
    world = world_size() if world is None else world
    at = rank() if at is None else at
    return at * n // world, (at + 1) * n // world


def owner(index: int) -> int:
    """The rank that does job ``index`` of a list shared round-robin (every rank agrees)."""
    return index % world_size()


def local_counts(n_local: int) -> list[int]:
    """Every rank's ``n_local`` (e.g. how many calibration segments it holds), in rank order."""
    if not active():
        return [n_local]
    t = torch.zeros(world_size(), dtype=torch.int64)
    t[rank()] = n_local
    return [int(v) for v in all_reduce_(t, "sum", "counting samples")]


def split_rows(x: torch.Tensor, what: str) -> torch.Tensor:
    """This rank's contiguous share of the rows of ``x``; refuses fewer rows than ranks (a rank with
    nothing to do would leave every statistic it owns undefined)."""
    if not active():
        return x
    if x.shape[0] < world_size():
        raise PTQUserError(f"{x.shape[0]} {what} cannot be shared by {world_size()} processes; use at least "
                           f"{world_size()} (one per process) or fewer processes")
    start, stop = share(x.shape[0])
    return x[start:stop]


def merged(parts: Sequence[Any]) -> Any:
    """Mergeable statistics (observers, anything with ``merge``) combined in rank order into a copy of the first."""
    import copy

    out = copy.deepcopy(parts[0])
    for p in parts[1:]:
        out.merge(p)
    return out
