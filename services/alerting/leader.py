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

import asyncpg

from shared.db import UNAVAILABLE

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
