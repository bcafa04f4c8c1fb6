"""Compare a plan's :class:`~calibration.plan.estimate.Estimate` with what this machine has."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from calibration.plan.estimate import MiB, Estimate
from calibration.plan.machine import accelerator_memory, available_memory, current_rss, free_disk


@dataclass
class Capacity:
    """What the machine offers: host memory beyond what this process already holds, the
    accelerator's free memory, free disk where the output goes (bytes; ``None``: unknown)."""

    host: int | None
    accelerator: int | None = None
    disk: int | None = None
    rss_now: int = 0

    @classmethod
    def measure(cls, output: str | Path | None = None, device: torch.device | None = None) -> "Capacity":
        return cls(host=available_memory(), accelerator=accelerator_memory(device) if device is not None else None,
                   disk=free_disk(output) if output is not None else None, rss_now=current_rss())


@dataclass
class Verdict:
    estimate: Estimate
    capacity: Capacity
    problems: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems


def judge(est: Estimate, cap: Capacity) -> Verdict:
    """The problems that would make the run fail: each one line saying what is short and by how much."""
    problems = []
    if cap.host is not None and est.host_peak - cap.rss_now > cap.host:
        problems.append(f"the run needs about {est.host_peak / MiB:,.0f} MiB of host memory at its peak, and "
                        f"{(cap.host + cap.rss_now) / MiB:,.0f} MiB are available (MemAvailable / cgroup limit)")
    if est.accel_peak is not None and cap.accelerator is not None and est.accel_peak > cap.accelerator:
        problems.append(f"the run needs about {est.accel_peak / MiB:,.0f} MiB of accelerator memory, and "
                        f"{cap.accelerator / MiB:,.0f} MiB are free on the device")
    if cap.disk is not None and est.disk_bytes * 1.1 > cap.disk:
        problems.append(f"not enough disk space: the output needs about {est.output_bytes / MiB:,.0f} MiB (plus "
                        f"{est.work_bytes / MiB:,.0f} MiB of resume work folder while it runs), and "
                        f"{cap.disk / MiB:,.0f} MiB are free there")
    return Verdict(est, cap, problems)
