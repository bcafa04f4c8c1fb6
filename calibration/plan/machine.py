"""What this machine can hold and how fast it computes: memory available to this process
(``/proc/meminfo`` MemAvailable and the cgroup's limit), free disk, resident memory now, and a
measured matmul rate (the time probe of a plan)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) -> None


def meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (``psutil`` elsewhere, if installed)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def cgroup_headroom() -> int | None:
    """Bytes this process's memory cgroup may still grow by (``None``: no limit found)."""
    for limit_file, usage_file in CGROUP_FILES:
        limit = _read_int(limit_file)
        if limit is not None and limit < 1 << 60:
            usage = _read_int(usage_file) or 0
            return max(limit - usage, 0)
    return None


def available_memory() -> int | None:
    """Bytes of host memory a new allocation can get: the smaller of MemAvailable and the cgroup headroom."""
    values = [v for v in (meminfo_available(), cgroup_headroom()) if v is not None]
    return min(values) if values else None


def current_rss() -> int:
    """Resident memory of this process now, in bytes (``/proc/self/statm``; 0 where unknown)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def free_disk(path: str | Path) -> int:
    """Free bytes on the file system that would hold ``path`` (its nearest existing ancestor)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def accelerator_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (``None`` for the CPU or an unknown device)."""
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def matmul_rate(k: int, n: int, m: int = 512, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu", repeats: int = 3) -> float:
    """Measured multiply-adds x 2 per second (FLOP/s) of an ``[m, k] @ [k, n]`` matmul: the model's
    own shapes, on this machine's threads, best of ``repeats`` after one warm-up (a few ms)."""
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    best = float("inf")
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / max(best, 1e-9)
