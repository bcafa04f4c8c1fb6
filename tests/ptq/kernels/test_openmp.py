"""Ending a parked thread's OpenMP team (:mod:`ptq.kernels.openmp`)."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import torch

from ptq.kernels.openmp import openmp_runtime, release_openmp_team


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_release_ends_the_calling_threads_team_and_kernels_still_run(two_threads):
    if not sys.platform.startswith("linux") or openmp_runtime() is None:
        pytest.skip("needs Linux and an OpenMP runtime with omp_pause_resource_all (PyTorch's libgomp)")
    x = torch.ones(1 << 22)
    seen = {}

    def worker() -> None:
        seen["sum"] = float(x.sum())  # a parallel kernel: this thread now has a team of its own
        seen["with_team"] = _threads()
        seen["released"] = release_openmp_team()
        deadline = time.monotonic() + 5
        while _threads() > seen["with_team"] - (torch.get_num_threads() - 1) and time.monotonic() < deadline:
            time.sleep(0.01)  # the team's threads end on their own schedule
        seen["without_team"] = _threads()
        seen["again"] = float((x * 2).sum())  # the team is made again when needed

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["released"]
    assert seen["without_team"] == seen["with_team"] - (torch.get_num_threads() - 1)
    assert (seen["sum"], seen["again"]) == (float(1 << 22), float(2 << 22))


def test_release_without_a_runtime_is_a_harmless_no(monkeypatch):
    import ptq.kernels.openmp as openmp

    monkeypatch.setattr(openmp, "openmp_runtime", lambda: None)
    assert openmp.release_openmp_team() is False
