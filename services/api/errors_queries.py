"""The SQL of the errors routes: a tenant's error events (`errors`, migration 0010),
grouped by fingerprint.

- `error_stats`: over [start, end), per fingerprint: count, first and last seen, and the
  latest occurrence's id, type and message as a sample; the `limit` largest groups, by
  count then fingerprint; plus the range's totals (errors, fingerprints).
- `one_error`: one error by id (of that tenant only).
- `fingerprint_summary`: one fingerprint's count and first/last seen (over a range, or
  all time) and its latest occurrence in full.

Every query names the tenant: another tenant's error is "not found", never shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

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


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def error_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "fingerprint": row["fingerprint"],
        "type": row["type"],
        "message": row["message"],
        "stack": row["stack"],
        "labels": orjson.loads(row["labels"]),
        "occurred_at": _iso(row["occurred_at"]),
        "received_at": _iso(row["received_at"]),
    }


async def error_stats(
    conn: asyncpg.Connection, tenant: str, start: datetime, end: datetime, limit: int
) -> dict[str, Any]:
    totals = await conn.fetchrow(_TOTALS, tenant, start, end)
    rows = await conn.fetch(_GROUPS, tenant, start, end, limit)
    return {
        "from": _iso(start),
        "to": _iso(end),
        "total": totals["errors"],
        "fingerprints": totals["fingerprints"],
        "groups": [
            {
                "fingerprint": r["fingerprint"],
                "count": r["count"],
                "first_seen": _iso(r["first_seen"]),
                "last_seen": _iso(r["last_seen"]),
                "type": r["type"],
                "sample": {"id": str(r["id"]), "message": r["message"]},
            }
            for r in rows
        ],
    }


async def one_error(conn: asyncpg.Connection, tenant: str, error_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(_ONE, tenant, error_id)
    return error_json(row) if row is not None else None


async def fingerprint_summary(
    conn: asyncpg.Connection,
    tenant: str,
    fingerprint: str,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any] | None:
    summary = await conn.fetchrow(_SUMMARY, tenant, fingerprint, start, end)
    if not summary["count"]:
        return None
    latest = await conn.fetchrow(_LATEST, tenant, fingerprint, start, end)
    return {
        "fingerprint": fingerprint,
        "count": summary["count"],
        "first_seen": _iso(summary["first_seen"]),
        "last_seen": _iso(summary["last_seen"]),
        "sample": error_json(latest),
    }
