"""Calibration statistics of a block summed over the ranks of a data-parallel run.

Each rank observes its share of the calibration segments (:func:`calibration.distributed.split_rows`);
before a step uses a statistic, :func:`reduce_statistic` makes it the statistic of all the segments,
the same on every rank:

- GPTQ's Hessian (:class:`ptq.algorithms.hessian.HessianAccumulator`, ``H = 2/n sum_t x_t x_t^T``):
  ``n H`` and ``n`` are summed over the ranks, ``H = sum_r n_r H_r / sum_r n_r`` (GPTQ Sec. 4 "Step 3",
  the reference's ``add_batch`` running mean, split by rows);
- an observer (anything with ``merge``: min-max, absmax / RMS / mean-|x| per channel, histograms):
  the ranks' observers are gathered and merged in rank order;
- anything else implements ``all_reduce()`` itself (the activation moments of
  ``activation-stats``, AWQ's kept input rows).

Without a process group every function returns at once.
"""
from __future__ import annotations

from typing import Any

import torch

from calibration import distributed
from ptq.algorithms.hessian import HessianAccumulator


def reduce_hessian(acc: HessianAccumulator) -> None:
    """``acc`` becomes the Hessian of every rank's rows, in place (sums of ``n H`` and of ``n``)."""
    if not distributed.active():
        return
    H = acc.H  # the accumulator's own tensor, symmetrised
    n = torch.tensor([float(acc.nsamples)], dtype=torch.float64)
    distributed.all_reduce_(n, "sum", "summing Hessian sample counts")
    H.mul_(acc.nsamples)
    distributed.all_reduce_(H, "sum", "summing GPTQ Hessians")
    total = int(n.item())
    if total:
        H.div_(total)
    acc.nsamples = total


def reduce_statistic(stat: Any) -> None:
    """``stat`` becomes the statistic of every rank's data, in place (module docstring)."""
    if not distributed.active():
        return
    if isinstance(stat, HessianAccumulator):
        reduce_hessian(stat)
    elif hasattr(stat, "all_reduce"):
        stat.all_reduce()
    elif hasattr(stat, "merge"):
        whole = distributed.merged(distributed.all_gather_objects(stat, f"merging {type(stat).__name__} states"))
        stat.__dict__.update(whole.__dict__)
    else:
        raise TypeError(f"{type(stat).__name__} cannot be reduced over ranks: give it merge(other) or all_reduce()")


def reduce_statistics(stats: dict[str, Any]) -> None:
    """Every statistic of ``stats`` reduced, in sorted name order (every rank issues the same collectives)."""
    for name in sorted(stats):
        reduce_statistic(stats[name])


def first_samples_here(nsamples: int, n_local: int) -> int:
    """How many of this rank's ``n_local`` segments are among the first ``nsamples`` of all ranks
    (contiguous shares in rank order); ``nsamples`` of the whole run, as one process counts them."""
    counts = distributed.local_counts(n_local)
    start = sum(counts[:distributed.rank()])
    return max(0, min(nsamples - start, n_local))
