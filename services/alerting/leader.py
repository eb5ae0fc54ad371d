"""One evaluator per database: a Postgres advisory lock elects it.

The engine keeps each alert's state in memory between ticks, so two instances evaluating
the same rules (a rolling update's surge pod, a second replica) could both announce a
transition. The instance holding the lock consumes metric events and ticks; any other
stays a hot standby — not ready, so no traffic reaches its API — and takes over, loading
the state from Postgres, as soon as the lock is free. The lock lives on its own
connection: if that connection dies, the lock is gone, and the holder stops evaluating
before it tries to take it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg
from aio_pika.abc import AbstractChannel

from services.alerting.retrying import Failures
from shared.db import UNAVAILABLE
from shared.failures import error_text
from shared.topology import Topology

if TYPE_CHECKING:  # the engine imports nothing of this module; typing only
    from services.alerting.consumer import MetricConsumer
    from services.alerting.evaluator import AlertEngine

log = logging.getLogger("belfry.alerting.leader")


def lock_key(prefix: str) -> int:
    """A stable signed 64-bit key per topology prefix (tests share one database server)."""
    return zlib.crc32(f"belfry-alerting-evaluator:{prefix}".encode()) - (1 << 31)


class EvaluatorLock:
    def __init__(self, database_url: str, prefix: str) -> None:
        self.database_url = database_url
        self.key = lock_key(prefix)
        self.lost = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed() and not self.lost.is_set()

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; False while another instance holds it."""
        if self.held:
            return True
        await self._close()
        conn = await asyncpg.connect(self.database_url, timeout=5)
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self.lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self.lost.set())
        self._conn = conn
        return True

    async def check(self) -> None:
        """Probe the lock's connection, so a dead one is noticed between ticks."""
        if self._conn is None:
            return
        try:
            await self._conn.fetchval("SELECT 1", timeout=5)
        except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
            log.warning("evaluator lock connection lost", extra={"error": str(exc)[:200]})
            self.lost.set()

    async def release(self) -> None:
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)  # closing ends the session: unlocks


# How often a standby instance tries to take the evaluator lock, and how often the holder
# checks that its lock connection is alive.
LOCK_POLL_SECONDS = 1.0
LOCK_CHECK_SECONDS = 5.0
STANDBY = "standby: another alerting instance holds the evaluator lock"


class Consuming:
    """The metric-queue subscription, on only while this instance evaluates."""

    def __init__(self, topo: Topology, consumer: MetricConsumer) -> None:
        self.topo, self.consumer = topo, consumer
        self.active = False
        # The channel on_connect finished declaring on (the queue exists there).
        self.declared: AbstractChannel | None = None
        self._on: tuple[AbstractChannel, str] | None = None

    async def start(self) -> None:
        self.active = True
        await self.subscribe(self.declared)

    async def subscribe(self, channel: AbstractChannel | None) -> None:
        """Consume on `channel` (the current one; a reconnect brings a new one)."""
        if not self.active or channel is None or channel.is_closed:
            return
        if self._on is not None and self._on[0] is channel:
            return
        queue = await channel.get_queue(self.topo.alerting_queue, ensure=False)
        self._on = (channel, await queue.consume(self.consumer.on_message))

    async def stop(self) -> None:
        self.active = False
        on, self._on = self._on, None
        if on is not None and not on[0].is_closed:
            with contextlib.suppress(Exception):
                queue = await on[0].get_queue(self.topo.alerting_queue, ensure=False)
                await queue.cancel(on[1])


async def evaluate_while_leader(
    prepare: Callable[[], Awaitable[None]],
    engine: AlertEngine,
    lock: EvaluatorLock,
    consuming: Consuming,
    interval: float,
) -> None:
    """Forever: take the evaluator lock (else stay a standby), prepare (idempotent) and
    load, tick and consume while the lock is held; when it is lost, stop and start over."""
    failures = Failures(log, "alerting start-up (database)", base=0.5, cap=10.0)
    while True:
        try:
            if not await lock.try_acquire():
                engine.last_error = STANDBY
                await asyncio.sleep(LOCK_POLL_SECONDS)
                continue
            await prepare()
            await engine.load()
        except Exception as exc:
            engine.last_error = error_text(exc)[:300]
            await asyncio.sleep(failures.failed(exc))
            continue
        failures.succeeded()
        engine.start(interval)
        await consuming.start()
        log.info("evaluating: this instance holds the evaluator lock")
        while not lock.lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lock.lost.wait(), LOCK_CHECK_SECONDS)
            await lock.check()
        log.warning("evaluator lock lost: evaluation stops until it is taken again")
        await consuming.stop()
        await engine.stop()
        engine.loaded = False
        engine.last_error = "evaluator lock lost"
