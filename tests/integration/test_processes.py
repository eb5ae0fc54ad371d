"""The services as real processes: SIGTERM drain and INGEST_WORKERS on one port."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from tests.integration.helpers import rows
from tests.support.eventually import eventually


async def test_sigterm_turns_unready_drains_and_exits_with_every_hit_stored(
    spawn: Callable[..., Any], db: asyncpg.Connection
) -> None:
    await spawn("writer")
    ingest = await spawn("ingest", SHUTDOWN_GRACE_SECONDS="1")
    async with aiohttp.ClientSession() as http:
        hits = [
            asyncio.ensure_future(http.get(f"{ingest.url}/acme/pixel/s{i}.gif")) for i in range(200)
        ]
        await asyncio.sleep(0)  # let the requests start before the signal
        started = time.monotonic()
        ingest.proc.send_signal(signal.SIGTERM)
        # Not ready first, while still answering.
        async with http.get(ingest.url + "/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["reasons"]["process"] == "shutting down"
        responses = await asyncio.gather(*hits, return_exceptions=True)
    code = await asyncio.wait_for(ingest.proc.wait(), 30)
    assert code == 0, ingest.log.read_text()[-2000:]
    assert time.monotonic() - started < 30
    ok = [r for r in responses if isinstance(r, aiohttp.ClientResponse) and r.status == 200]
    assert len(ok) == 200, "requests in flight at SIGTERM must still be answered"
    stored = await rows(db, len(ok))
    assert len(stored) == len(ok)


async def test_writer_sigterm_exits_promptly(spawn: Callable[..., Any]) -> None:
    writer = await spawn("writer")
    started = time.monotonic()
    writer.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(writer.proc.wait(), 30) == 0
    assert time.monotonic() - started < 10


async def test_ingest_workers_share_one_port_each_with_its_own_spool(
    spawn: Callable[..., Any], db: asyncpg.Connection, tmp_path: Path
) -> None:
    await spawn("writer")
    ingest = await spawn("ingest", INGEST_WORKERS="2")
    # Ready means one worker answers; the other may still be starting (it locks its own
    # spool directory at start-up).
    spool = tmp_path / "spool"

    async def spools() -> list[str]:
        return sorted(p.name for p in spool.iterdir()) if spool.exists() else []

    await eventually(spools, lambda names: len(names) == 2, what="both workers' spools")
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(
            *(http.get(f"{ingest.url}/acme/pixel/w{i}.gif") for i in range(100))
        )
        assert {r.status for r in statuses} == {200}
    stored = await rows(db, 100)
    assert len(stored) == 100
    assert await spools() == ["worker-0", "worker-1"]
    ingest.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(ingest.proc.wait(), 30) == 0


async def test_workers_exit_when_their_supervisor_is_killed(spawn: Callable[..., Any]) -> None:
    ingest = await spawn("ingest", INGEST_WORKERS="2")
    pid = ingest.proc.pid
    workers = _children(pid)
    assert len(workers) == 2
    ingest.proc.kill()  # -9: no chance to forward a signal
    await asyncio.wait_for(ingest.proc.wait(), 10)

    async def alive() -> list[int]:
        return [w for w in workers if _running(w)]

    await eventually(alive, lambda left: not left, timeout=15, what="workers gone")


def _children(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie lingers until init reaps it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
