"""A tenant's error events (`errors`, migration 0010), grouped by fingerprint, as the
errors routes answer them (services/api/contracts_answers.py):

- `stats`: over [start, end), per fingerprint: count, first and last seen, and the
  latest occurrence's id, type and message as a sample; the `limit` largest groups, by
  count then fingerprint; plus the range's totals (errors, fingerprints).
- `one`: one error by id (of that tenant only).
- `fingerprint`: one fingerprint's count and first/last seen (over a range, or all time)
  and its latest occurrence in full.

Every query names the tenant: another tenant's error is "not found", never shown. The
answers of several queries come from one read-only snapshot, so they agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Protocol

import asyncpg
import orjson

from services.api.contracts_answers import (
    ErrorEvent,
    ErrorGroup,
    ErrorSample,
    ErrorStats,
    ErrorStatsGroup,
)

_GROUPS = """
WITH g AS (
    SELECT fingerprint, count(*) AS count, min(occurred_at) AS first_seen,
           max(occurred_at) AS last_seen
    FROM errors
    WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3
    GROUP BY fingerprint
    ORDER BY count DESC, fingerprint
    LIMIT $4
)
SELECT g.*, s.id, s.type, s.message
FROM g CROSS JOIN LATERAL (
    SELECT id, type, message FROM errors e
    WHERE e.tenant_id = $1 AND e.fingerprint = g.fingerprint
      AND e.occurred_at >= $2 AND e.occurred_at < $3
    ORDER BY e.occurred_at DESC, e.id DESC
    LIMIT 1
) s
ORDER BY g.count DESC, g.fingerprint
"""

_TOTALS = """
SELECT count(*) AS errors, count(DISTINCT fingerprint) AS fingerprints
FROM errors WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3
"""

_COLUMNS = "id, fingerprint, type, message, stack, labels::text AS labels, occurred_at, received_at"

_ONE = f"SELECT {_COLUMNS} FROM errors WHERE tenant_id = $1 AND id = $2 LIMIT 1"

# One fingerprint's rows, within [$3, $4) where given.
_ONE_FINGERPRINT = """WHERE tenant_id = $1 AND fingerprint = $2
  AND occurred_at >= coalesce($3::timestamptz, '-infinity')
  AND occurred_at < coalesce($4::timestamptz, 'infinity')"""

_SUMMARY = f"""
SELECT count(*) AS count, min(occurred_at) AS first_seen, max(occurred_at) AS last_seen
FROM errors
{_ONE_FINGERPRINT}
"""

_LATEST = f"""
SELECT {_COLUMNS} FROM errors
{_ONE_FINGERPRINT}
ORDER BY occurred_at DESC, id DESC
LIMIT 1
"""


def _iso(at: datetime) -> str:
    return at.isoformat()


def error_event(row: asyncpg.Record) -> ErrorEvent:
    return ErrorEvent(
        id=str(row["id"]),
        fingerprint=row["fingerprint"],
        type=row["type"],
        message=row["message"],
        stack=row["stack"],
        labels=orjson.loads(row["labels"]),
        occurred_at=_iso(row["occurred_at"]),
        received_at=_iso(row["received_at"]),
    )


def _group(row: asyncpg.Record) -> ErrorStatsGroup:
    return ErrorStatsGroup(
        fingerprint=row["fingerprint"],
        count=row["count"],
        first_seen=_iso(row["first_seen"]),
        last_seen=_iso(row["last_seen"]),
        type=row["type"],
        sample=ErrorSample(id=str(row["id"]), message=row["message"]),
    )


class ErrorRepo(Protocol):
    async def stats(
        self, tenant: str, start: datetime, end: datetime, limit: int
    ) -> ErrorStats: ...
    async def one(self, tenant: str, error_id: str) -> ErrorEvent | None: ...
    async def fingerprint(
        self, tenant: str, fingerprint: str, start: datetime | None, end: datetime | None
    ) -> ErrorGroup | None: ...


class PgErrorRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stats(self, tenant: str, start: datetime, end: datetime, limit: int) -> ErrorStats:
        async with snapshot(self._pool) as conn:
            totals = await conn.fetchrow(_TOTALS, tenant, start, end)
            rows = await conn.fetch(_GROUPS, tenant, start, end, limit)
        return ErrorStats(
            from_=_iso(start),
            to=_iso(end),
            total=totals["errors"],
            fingerprints=totals["fingerprints"],
            groups=[_group(r) for r in rows],
        )

    async def one(self, tenant: str, error_id: str) -> ErrorEvent | None:
        row = await self._pool.fetchrow(_ONE, tenant, error_id)
        return error_event(row) if row is not None else None

    async def fingerprint(
        self, tenant: str, fingerprint: str, start: datetime | None, end: datetime | None
    ) -> ErrorGroup | None:
        async with snapshot(self._pool) as conn:
            summary = await conn.fetchrow(_SUMMARY, tenant, fingerprint, start, end)
            if not summary["count"]:
                return None
            latest = await conn.fetchrow(_LATEST, tenant, fingerprint, start, end)
        return ErrorGroup(
            fingerprint=fingerprint,
            count=summary["count"],
            first_seen=_iso(summary["first_seen"]),
            last_seen=_iso(summary["last_seen"]),
            sample=error_event(latest),
        )


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One read-only, repeatable-read transaction: its queries see one moment."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        yield conn
