"""The OpenMP runtime behind PyTorch's CPU kernels: ending an idle thread's worker team.

Every thread that runs a parallel PyTorch kernel becomes an OpenMP master with a team of worker
threads of its own, kept after the kernel ends. GNU libgomp lets a team's threads spin for a while
before they sleep, but only while the process has no more OpenMP threads than CPUs; past that it
spins about a hundred times, so that *every* parallel region of *every* thread pays a sleep and a
futex wake-up of its workers. A job that parks threads mid-computation (the suspended forwards of
:mod:`calibration.runner.staged`, one thread per calibration mini-batch) would keep one idle team
per parked thread and slow down all small kernels of the thread that is running. A thread ends its
team before it parks with :func:`release_openmp_team` (OpenMP 5.0 ``omp_pause_resource_all``); the
team is made again, once, the next time that thread runs a parallel kernel.
"""
from __future__ import annotations

import ctypes
import sys
from functools import lru_cache

OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: end the threads, keep what can be rebuilt
_RUNTIMES = ("libgomp", "libiomp", "libomp")


@lru_cache(maxsize=1)
def openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime this process has loaded (Linux: found in ``/proc/self/maps``), if it has
    ``omp_pause_resource_all``; else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if any(name in line.rsplit("/", 1)[-1] for name in _RUNTIMES)})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle, no second runtime
        except OSError:
            continue
        if hasattr(lib, "omp_pause_resource_all"):
            lib.omp_pause_resource_all.argtypes = [ctypes.c_int]
            lib.omp_pause_resource_all.restype = ctypes.c_int
            return lib
    return None


def release_openmp_team() -> bool:
    """End the calling thread's idle OpenMP worker threads (``omp_pause_resource_all(omp_pause_soft)``).
    Call it outside any parallel region, from a thread about to wait for a long time. Returns whether
    the runtime did it (``False`` where no OpenMP runtime with the call is loaded)."""
    lib = openmp_runtime()
    return lib is not None and lib.omp_pause_resource_all(OMP_PAUSE_SOFT) == 0
