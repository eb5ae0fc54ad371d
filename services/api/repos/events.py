"""A tenant's raw events (`events`), read for the export: oldest first, in chunks from a
server-side cursor, so memory stays flat however many rows there are."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

import asyncpg

from services.api.timerange import Scope

# The exported columns, in order (the CSV's header, the NDJSON's keys).
COLUMNS = (
    "id",
    "occurred_at",
    "received_at",
    "kind",
    "email_id",
    "url",
    "ip",
    "user_agent",
    "verdict",
    "verdict_reason",
    "props",
)

EXPORT = """
SELECT id::text, occurred_at, received_at, kind, email_id, url, host(ip) AS ip, user_agent,
       verdict, verdict_reason, props::text
FROM events
WHERE tenant_id = $1
  AND ($2::timestamptz IS NULL OR occurred_at >= $2)
  AND ($3::timestamptz IS NULL OR occurred_at < $3)
  AND ($4::text IS NULL OR email_id = $4)
  AND ($5::text IS NULL OR kind = $5)
ORDER BY occurred_at, id
"""


class EventRepo(Protocol):
    # Rows (the values of COLUMNS, props as JSON text) in chunks of at most `size`: the
    # first always (it may be empty), the next only after a full one. Close it
    # (contextlib.aclosing) to end the read early.
    def chunks(
        self, tenant: str, scope: Scope, kind: str | None, size: int
    ) -> AsyncGenerator[list[asyncpg.Record], None]: ...


class PgEventRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def chunks(
        self, tenant: str, scope: Scope, kind: str | None, size: int
    ) -> AsyncGenerator[list[asyncpg.Record], None]:
        """One read-only transaction for the whole read; the next chunk is fetched only
        when the reader asks for it (the client's pace holds the cursor back)."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            args = (tenant, scope.start, scope.end, scope.email_id, kind)
            cursor = await conn.cursor(EXPORT, *args)
            while True:
                rows = await cursor.fetch(size)
                yield rows
                if len(rows) < size:
                    return
