"""Take a loaded model's weights out of the checkpoint's memory map: :func:`own_memory`.

``from_pretrained`` leaves CPU weights as views of the memory-mapped safetensors file. Pages a
calibration pass has read count in the resident set for as long as the mapping is open, and
one tensor still using it (the embedding always is) keeps all of it open: after W8A8 or
LLM.int8() modules replaced SmolLM2-135M's linear layers, the process kept the 425 MB of float
block weights it no longer used. Copying every tensor into memory of its own fixes that, and
giving each copied tensor's file pages back at once (``madvise(MADV_DONTNEED)``, only on
whole pages inside a file-backed mapping, which the kernel can always read again from the
file) keeps the copy from ever holding two versions of the model. The input embedding stays
mapped: quantization never replaces it, and only the rows of the tokens a pass reads are paged in.
"""
from __future__ import annotations

import ctypes
import mmap
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ptq.kernels.allocator import glibc

MADV_DONTNEED = 4


@lru_cache(maxsize=1)
def _madvise() -> Any:
    libc = glibc()
    if libc is None or not hasattr(libc, "madvise"):
        return None
    fn = libc.madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def file_mappings() -> list[tuple[int, int]]:
    """``(start, end)`` addresses of this process's file-backed memory mappings (Linux; else empty)."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.readlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            lo, hi = fields[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


def release_file_pages(t: torch.Tensor, mappings: list[tuple[int, int]]) -> bool:
    """Drop the resident pages of ``t``'s storage if it lies in a file-backed mapping (whole
    pages only, so no neighbouring tensor loses a page). Returns whether it did."""
    madvise = _madvise()
    storage = t.untyped_storage()
    start, size = storage.data_ptr(), storage.nbytes()
    page = mmap.PAGESIZE
    lo, hi = -(-start // page) * page, (start + size) // page * page
    if madvise is None or hi <= lo or not any(a <= lo and hi <= b for a, b in mappings):
        return False
    return madvise(lo, hi - lo, MADV_DONTNEED) == 0


def own_memory(model: nn.Module, keep_mapped: tuple[torch.Tensor, ...] = ()) -> nn.Module:
    """Copy every CPU parameter and buffer into memory of its own, releasing each one's file
    pages as it goes. Tied weights stay tied (one parameter object, copied once).

    ``keep_mapped``: tensors left as they are, e.g. the input embedding, of which calibration
    reads only the rows of the tokens it sees (the rest of SmolLM2-135M's 113 MB table is never
    paged in). Returns ``model``.
    """
    mappings = file_mappings()
    kept = {id(t) for t in keep_mapped}
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.device.type != "cpu" or id(t) in kept:
                continue
            old = t.data
            t.data = old.clone()
            if mappings:
                release_file_pages(old, mappings)
    return model
