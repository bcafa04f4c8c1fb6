"""glibc heap settings: applied on Linux, harmless to repeat, no effect on results."""
from __future__ import annotations

import sys

import torch

from ptq.kernels.allocator import keep_freed_memory, share_heap_arenas, trim_freed_memory


def test_keep_and_trim_are_safe_and_repeatable():
    applied = keep_freed_memory()
    assert applied == keep_freed_memory()
    if sys.platform.startswith("linux"):
        assert applied  # glibc (the CI image) accepts both settings
    x = torch.randn(512, 1536)
    y = x * 2
    del x
    trim_freed_memory()
    assert torch.isfinite(y).all()


def test_share_heap_arenas_applies_on_glibc_and_threads_still_allocate():
    import threading

    applied = share_heap_arenas(1)
    if sys.platform.startswith("linux"):
        assert applied
    out = []
    threads = [threading.Thread(target=lambda: out.append(torch.ones(256, 256).sum())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [float(v) for v in out] == [256.0 * 256] * 4



_COUNT_HEAPS = r"""
import ctypes, sys, threading
import torch
from ptq.kernels.allocator import glibc, keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
libc = glibc()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
held, barrier = [], threading.Barrier(5)
def work():  # one suspended forward's worth: allocate, and hold while the others run
    held.append(torch.ones(1 << 18))
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
barrier.wait()
f = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
barrier.wait()
for t in threads:
    t.join()
print(open(sys.argv[2]).read().count("<heap nr="))
"""


def test_keep_freed_memory_puts_every_thread_on_the_main_heap(tmp_path):
    """After :func:`keep_freed_memory` at job start, threads allocate from glibc's main heap,
    which keeps freed blocks for reuse, not from heaps of their own, which give freed tensors
    of tens of MB back to the OS (calibration's suspended forwards, one thread per mini-batch,
    would page-fault them in again on every call). Counted with ``malloc_info``."""
    import subprocess
    from pathlib import Path

    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc heaps (Linux)")
    root = Path(__file__).resolve().parents[3]

    def heaps(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _COUNT_HEAPS, mode, str(tmp_path / f"{mode}.xml")], cwd=root,
                             capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    assert heaps("default") > 1  # the control: without it, threads make heaps of their own
    assert heaps("keep") == 1
