"""What processes cost: CPU seconds and RSS of one process, of every process with a
command name (the machine's RabbitMQ, Postgres), of the whole machine, through psutil.

CPU seconds are user + system of the process itself (not of its reaped children, unless
asked for), as the kernel counts them: the same figures /proc/<pid>/stat holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import psutil

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds `pid` has used so far; None if it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except _GONE:
        return None
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of `pid` now; None if it is gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except _GONE:
        return None


def cpu_seconds_by_name(names: Iterable[str], reaped: bool = False) -> dict[str, float]:
    """CPU seconds so far of all processes with each command name (`beam.smp`,
    `postgres`): what the hits cost outside our own processes. `reaped`: also what their
    children that have exited cost (Postgres's backends of closed connections are counted
    in the postmaster's), for measurements across connections that close."""
    totals = dict.fromkeys(names, 0.0)
    for proc in psutil.process_iter(["name", "cpu_times"]):
        name, times = proc.info["name"], proc.info["cpu_times"]
        if name in totals and times is not None:
            totals[name] += times.user + times.system
            if reaped:
                totals[name] += times.children_user + times.children_system
    return totals


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores: total is
    every field of the kernel's count, busy is total less idle and iowait."""
    times = psutil.cpu_times()
    total = float(sum(times))
    return total - times.idle - getattr(times, "iowait", 0.0), total


def processes_named(name: str, exclude: int | None = None) -> list[str]:
    """`<pid> <command line>` of every process called `name` but `exclude`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == name and proc.pid != exclude:
            found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])}".strip())
    return found


class PeakRss:
    """Peak RSS of a process, sampled in the background from `start()` to `stop()`."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def peak_kb(self) -> int:
        return self.peak_bytes // 1024

    def start(self) -> PeakRss:
        self._task = asyncio.create_task(self._run())
        return self

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, rss_bytes(self.pid) or 0)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    async def stop(self) -> int:
        """Stops sampling (one last sample first); the peak in bytes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()
        return self.peak_bytes
