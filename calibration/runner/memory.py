"""Resident memory of this process (Linux / macOS): the peak, and giving freed memory back."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from functools import lru_cache


def peak_rss_mb() -> float:
    """Peak resident set size so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` (``None`` elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise,
    so a block's freed activations would still count in the next block's resident memory)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
