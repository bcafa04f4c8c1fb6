"""Start a Python command once per rank with the environment ``torchrun`` gives its workers.

``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (a free local port), one
intra-op thread each; the processes run from the repository root so that they import this checkout.
Tests of the data-parallel mode use it instead of ``torchrun`` where they need each rank's exit code
and output (``torchrun``'s agent kills the other workers when one fails).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), **(extra or {})}
    return env


def start(args: list[str], world: int = 2, extra_env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Start ``python *args`` as ranks ``0 .. world-1`` (do other work, then :func:`finish`)."""
    port = free_port()
    return [subprocess.Popen([sys.executable, *args], cwd=ROOT, env=rank_env(r, world, port, extra_env),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]


def finish(procs: list[subprocess.Popen], timeout: float = 180) -> list[subprocess.CompletedProcess]:
    """Wait for every rank; their results in rank order (all killed if one outlives ``timeout``)."""
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def launch(args: list[str], world: int = 2, extra_env: dict[str, str] | None = None,
           timeout: float = 180) -> list[subprocess.CompletedProcess]:
    """Run ``python *args`` as ranks ``0 .. world-1`` at once; every rank's result, in rank order."""
    return finish(start(args, world, extra_env), timeout)
