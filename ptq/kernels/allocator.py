"""glibc heap settings for int8 inference on CPU: keep freed blocks for reuse, trim on demand.

PyTorch's CPU tensors come from ``malloc``. By default glibc serves a block above a dynamic
threshold with a fresh ``mmap`` and returns the top of the heap to the OS when a lot is free,
so a layer that allocates a few MB per call (an int32 accumulator and a float32 output of
512 x 1536) can page-fault its memory back in on every call: on this project's 2-core test
machine a W8A8 576 -> 1536 layer then took 5.2 ms instead of 1.4 ms, from one run to the next.
:func:`keep_freed_memory` fixes the thresholds so freed blocks are reused; long jobs give
memory back explicitly at good moments with :func:`trim_freed_memory` (the calibration
runner does after each block). Both are no-ops where glibc is not the allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@lru_cache(maxsize=1)
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux (``mallopt`` and ``malloc_trim`` exist), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist (glibc)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20, arenas: int = 1) -> bool:
    """Serve blocks below ``mmap_threshold`` bytes from the heap, keep up to ``trim_threshold``
    bytes of free heap top instead of returning it to the OS, and let every thread allocate from
    at most ``arenas`` heaps (:func:`share_heap_arenas`). Process-wide; call it once at the start
    of a job, before other threads exist (the ``ptq`` CLI and the benchmark scripts do). Returns
    whether it applied."""
    libc = glibc()
    if libc is None:
        return False
    return (bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))
            and share_heap_arenas(arenas))


def share_heap_arenas(arenas: int = 1) -> bool:
    """Let threads allocate from at most ``arenas`` glibc heaps (``M_ARENA_MAX``) instead of one
    new heap each. A thread's own heap is made of 64 MiB pieces that glibc unmaps or shrinks as
    soon as they are free, so a thread that allocates and frees tensors of tens of MB (one
    suspended forward per calibration mini-batch, :mod:`calibration.runner.staged`) page-faults
    them in again on every call; the shared main heap keeps them (up to the trim threshold).
    glibc gives a new thread the heap of an ended thread first, whatever the limit, so set it
    before the job starts threads (:func:`keep_freed_memory` does). Process-wide; returns
    whether it applied."""
    libc = glibc()
    return bool(libc.mallopt(M_ARENA_MAX, arenas)) if libc is not None else False


def trim_freed_memory() -> None:
    """Return the free heap pages to the OS now (``malloc_trim(0)``)."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
