"""Notifications as the alerting API reads them: the delivery log (`notification_deliveries`,
`notification_attempts`, owned by notify) and, for what delivery has not taken yet or when
the log does not exist on this database, the outbox (`alert_outbox`)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson

from services.alerting.repos.codec import Row
from shared.db import Database

# A notification's envelope lists its alerts; `@>` finds the ones naming this fingerprint.
_DELIVERIES = """
SELECT d.notification_id, d.channel, d.channel_type, d.alert_status, d.status, d.attempts,
       d.last_error, d.created_at, d.delivered_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                   'attempt', t.attempt, 'at', t.at, 'outcome', t.outcome,
                   'status_code', t.status_code, 'error', t.error) ORDER BY t.id)
                 FROM notification_attempts t WHERE t.notification_id = d.notification_id),
                '[]'::jsonb) AS tries
FROM notification_deliveries d
WHERE d.tenant_id = $1 AND d.payload->'data'->'alerts' @> $2::jsonb
ORDER BY d.created_at LIMIT 500
"""
_QUEUED = """
SELECT o.notification_id, o.channel, o.channel_type, o.status AS alert_status,
       'queued' AS status, o.attempts, o.last_error, o.created_at, NULL::timestamptz
       AS delivered_at, '[]'::jsonb AS tries
FROM alert_outbox o
WHERE o.tenant_id = $1 AND o.envelope->'data'->'alerts' @> $2::jsonb {unlogged}
ORDER BY o.created_at LIMIT 500
"""
_UNLOGGED = (
    "AND NOT EXISTS (SELECT 1 FROM notification_deliveries d"
    " WHERE d.notification_id = o.notification_id)"
)
_COUNTS = """
SELECT channel, channel_type, status AS outcome, count(*) AS n FROM notification_deliveries
WHERE tenant_id = $1 AND created_at >= $2 AND created_at <= $3 GROUP BY 1, 2, 3 ORDER BY 1, 3
"""
_OUTBOX_COUNTS = """
SELECT channel, channel_type,
       CASE WHEN sent_at IS NULL THEN 'pending' ELSE 'published' END AS outcome,
       count(*) AS n FROM alert_outbox
WHERE tenant_id = $1 AND created_at >= $2 AND created_at <= $3 GROUP BY 1, 2, 3 ORDER BY 1, 3
"""


class PgNotificationReads:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def for_alert(self, tenant: str, fingerprint: str) -> list[Row]:
        """The notifications that carried the alert (at most 500 logged, 500 queued)."""
        match = orjson.dumps([{"fingerprint": fingerprint}]).decode()
        pool = await self._db.pool()
        try:
            rows = list(await pool.fetch(_DELIVERIES, tenant, match))
            rows += await pool.fetch(_QUEUED.format(unlogged=_UNLOGGED), tenant, match)
        except asyncpg.UndefinedTableError:  # no delivery log on this database
            rows = list(await pool.fetch(_QUEUED.format(unlogged=""), tenant, match))
        return rows

    async def counts(self, tenant: str, since: datetime, until: datetime) -> list[Row]:
        """(channel, channel_type, outcome, n) of the range: the delivery log's statuses,
        or the outbox's pending/published without it."""
        pool = await self._db.pool()
        try:
            return list(await pool.fetch(_COUNTS, tenant, since, until))
        except asyncpg.UndefinedTableError:
            return list(await pool.fetch(_OUTBOX_COUNTS, tenant, since, until))
