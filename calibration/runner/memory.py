"""Resident memory of this process (Linux / macOS): the peak, and giving freed memory back."""
from __future__ import annotations

import gc
import resource
import sys

from ptq.kernels.allocator import trim_freed_memory


def peak_rss_mb() -> float:
    """Peak resident set size so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc may keep them otherwise,
    so a block's freed activations would still count in the next block's resident memory)."""
    gc.collect()
    trim_freed_memory()
