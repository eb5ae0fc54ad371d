"""The asyncpg pool, opened lazily so a service starts (not ready) with Postgres down."""

from __future__ import annotations

import asyncio
import time

import asyncpg

# What a query meets when Postgres is away, restarting or the connection broke: answered
# as 503 (retry later) by the HTTP services, never as a 500.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
)


class Database:
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4) -> None:
        self.url = url
        self._min = min_size
        self._max = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = "not connected yet"
        self.last_ok: float = 0.0

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.url,
                        min_size=self._min,
                        max_size=self._max,
                        timeout=5,
                        command_timeout=30,
                    )
        return self._pool

    def mark_ok(self) -> None:
        self.last_error = None
        self.last_ok = time.monotonic()

    def mark_failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    async def check(self) -> str | None:
        """Readiness: one round trip, bounded by a short timeout."""
        try:
            pool = await asyncio.wait_for(self.pool(), 3)
            await pool.fetchval("SELECT 1", timeout=2)
        except Exception as exc:
            self.mark_failed(exc)
            return f"database unavailable: {self.last_error}"
        self.mark_ok()
        return None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except TimeoutError:
                pool.terminate()
