"""The delivery log in Postgres: one row per notification, one per attempt (migration
0004; `skipped` and pagerduty: 0007), and the channel definitions delivery reads
(`alert_channels`, migration 0003)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from services.alerting.notify.model import Notification
from shared.db import Database

# `skipped`: a `resolved` or `acknowledged` for a channel that never got the firing of its
# alerts, or an `acknowledged` for a channel type without an acknowledge action.
TERMINAL = ("delivered", "failed", "refused", "skipped")
STATUSES = ("pending", *TERMINAL)

_DELIVERY_COLUMNS = (
    "notification_id, tenant_id, channel, channel_type, rule_id, alert_status, status,"
    " attempts, last_error, created_at, updated_at, delivered_at"
)


@dataclass(frozen=True, slots=True)
class Channel:
    type: str
    config: dict[str, Any]
    enabled: bool


@dataclass(frozen=True, slots=True)
class Filters:
    status: str | None = None
    channel: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


# The firing notifications of one channel ($1 tenant, $2 channel; not $3, the resolved or
# acknowledged itself) that carried one of the episodes ($4 fingerprints, $5 starts), with their
# delivery status; an outbox row without a delivery yet counts as pending.
FIRINGS = """
WITH firing AS (
    SELECT d.status, d.payload AS doc FROM notification_deliveries d
    WHERE d.tenant_id = $1 AND d.channel = $2 AND d.alert_status = 'firing'
      AND d.status IN ('delivered', 'pending') AND d.notification_id <> $3
    UNION ALL
    SELECT 'pending', o.envelope FROM alert_outbox o
    WHERE o.tenant_id = $1 AND o.channel = $2 AND o.status = 'firing'
      AND NOT EXISTS (
          SELECT 1 FROM notification_deliveries d WHERE d.notification_id = o.notification_id
      )
)
SELECT a->>'fingerprint' AS fingerprint, f.status
FROM firing f, jsonb_array_elements(f.doc->'data'->'alerts') AS a
WHERE (a->>'fingerprint', (a->>'starts_at')::timestamptz)
      IN (SELECT * FROM unnest($4::text[], $5::timestamptz[]))
"""


def _episodes(n: Notification) -> tuple[list[str], list[datetime]]:
    return [a.fingerprint for a in n.alerts], [a.starts_at for a in n.alerts]


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _row(record: Any) -> dict[str, Any]:
    out = dict(record)
    out["notification_id"] = str(out["notification_id"])
    for key in ("created_at", "updated_at", "delivered_at", "at"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    return out


class DeliveryStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def begin(self, n: Notification, envelope: dict[str, Any]) -> str:
        """Record the notification if new; its current status either way."""
        pool = await self.database.pool()
        status = await pool.fetchval(
            """
            WITH new AS (
                INSERT INTO notification_deliveries
                    (notification_id, tenant_id, channel, channel_type, rule_id,
                     alert_status, payload)
                VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
                ON CONFLICT (notification_id) DO NOTHING
                RETURNING status
            )
            SELECT status FROM new
            UNION ALL
            SELECT status FROM notification_deliveries WHERE notification_id = $1
            LIMIT 1
            """,
            n.id,
            n.tenant,
            n.channel,
            n.channel_type,
            n.rule_id,
            n.status,
            orjson.dumps(envelope).decode(),
        )
        return str(status)

    async def firings(self, n: Notification) -> tuple[set[str], set[str]]:
        """For a `resolved` (or `acknowledged`) notification: which of its alerts had the
        `firing` of the same episode (fingerprint and start) delivered on the same channel,
        and which have one still on its way: pending in the log, or published by the
        outbox and not yet taken by a consumer (the two messages may be handled at once)."""
        pool = await self.database.pool()
        rows = await pool.fetch(FIRINGS, n.tenant, n.channel, n.id, *_episodes(n))
        delivered = {r["fingerprint"] for r in rows if r["status"] == "delivered"}
        pending = {r["fingerprint"] for r in rows if r["status"] == "pending"} - delivered
        return delivered, pending

    async def active_on_alertmanager(self) -> list[dict[str, Any]]:
        """Alerts still active in Belfry (firing, acknowledged or silenced, same episode)
        whose firing was delivered to an enabled Alertmanager channel: one row per
        channel and alert, with the channel's config and the alert as last delivered."""
        pool = await self.database.pool()
        rows = await pool.fetch(
            """
            SELECT DISTINCT ON (d.tenant_id, d.channel, a->>'fingerprint')
                   d.tenant_id, d.channel, c.config, d.payload->'data'->>'rule_name' AS rule,
                   a AS alert
            FROM notification_deliveries d
            JOIN alert_channels c
              ON c.tenant_id = d.tenant_id AND c.name = d.channel
             AND c.type = 'alertmanager' AND c.enabled
            CROSS JOIN LATERAL jsonb_array_elements(d.payload->'data'->'alerts') AS a
            JOIN alerts al
              ON al.fingerprint = a->>'fingerprint' AND al.tenant_id = d.tenant_id
            WHERE d.channel_type = 'alertmanager' AND d.alert_status = 'firing'
              AND d.status = 'delivered'
              AND al.state IN ('firing', 'acknowledged', 'silenced')
              AND al.fired_at = (a->>'starts_at')::timestamptz
            ORDER BY d.tenant_id, d.channel, a->>'fingerprint', d.delivered_at DESC
            """
        )
        return [
            {
                "tenant": r["tenant_id"],
                "channel": r["channel"],
                "config": _json(r["config"]),
                "rule": r["rule"],
                "alert": _json(r["alert"]),
            }
            for r in rows
        ]

    async def skip(self, notification_id: str, reason: str, at: datetime) -> None:
        """Nothing to send (see `firings`): the delivery ends `skipped`, with the reason."""
        pool = await self.database.pool()
        await pool.execute(
            "UPDATE notification_deliveries SET status = 'skipped', last_error = $2,"
            " updated_at = $3 WHERE notification_id = $1",
            notification_id,
            reason,
            at,
        )

    async def channel(self, tenant: str, name: str) -> Channel | None:
        pool = await self.database.pool()
        row = await pool.fetchrow(
            "SELECT type, config, enabled FROM alert_channels WHERE tenant_id = $1 AND name = $2",
            tenant,
            name,
        )
        if row is None:
            return None
        config = _json(row["config"])
        return Channel(str(row["type"]), config if isinstance(config, dict) else {}, row["enabled"])

    async def record(
        self,
        notification_id: str,
        *,
        attempt: int,
        at: datetime,
        status_code: int | None,
        latency_ms: float,
        error: str | None,
        outcome: str,
        status: str,
    ) -> None:
        """One attempt, and the delivery's state after it, in one transaction."""
        pool = await self.database.pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO notification_attempts"
                " (notification_id, attempt, at, status_code, latency_ms, error, outcome)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                notification_id,
                attempt,
                at,
                status_code,
                latency_ms,
                error,
                outcome,
            )
            await conn.execute(
                """
                UPDATE notification_deliveries
                SET attempts = attempts + 1,
                    status = $2,
                    last_error = CASE WHEN $2 = 'delivered' THEN NULL ELSE $3 END,
                    updated_at = $4,
                    delivered_at = CASE WHEN $2 = 'delivered' THEN $4 ELSE delivered_at END
                WHERE notification_id = $1
                """,
                notification_id,
                status,
                error,
                at,
            )

    async def list(self, tenant: str, f: Filters) -> list[dict[str, Any]]:
        pool = await self.database.pool()
        rows = await pool.fetch(
            f"""
            SELECT {_DELIVERY_COLUMNS} FROM notification_deliveries
            WHERE tenant_id = $1
              AND ($2::text IS NULL OR status = $2)
              AND ($3::text IS NULL OR channel = $3)
              AND ($4::text IS NULL OR rule_id = $4)
              AND ($5::timestamptz IS NULL OR created_at >= $5)
              AND ($6::timestamptz IS NULL OR created_at < $6)
            ORDER BY created_at DESC, notification_id
            LIMIT $7
            """,
            tenant,
            f.status,
            f.channel,
            f.rule,
            f.since,
            f.until,
            f.limit,
        )
        return [_row(r) for r in rows]

    async def get(self, tenant: str, notification_id: str) -> dict[str, Any] | None:
        pool = await self.database.pool()
        row = await pool.fetchrow(
            f"SELECT {_DELIVERY_COLUMNS}, payload FROM notification_deliveries"
            " WHERE tenant_id = $1 AND notification_id = $2",
            tenant,
            notification_id,
        )
        if row is None:
            return None
        out = _row(row)
        out["payload"] = _json(out["payload"])
        attempts = await pool.fetch(
            "SELECT attempt, at, status_code, latency_ms, error, outcome"
            " FROM notification_attempts WHERE notification_id = $1 ORDER BY id",
            notification_id,
        )
        out["attempts"] = [{**dict(a), "at": a["at"].isoformat()} for a in attempts]
        return out

    async def reopen(self, tenant: str, notification_id: str) -> dict[str, Any] | None:
        """Set a failed or refused notification pending again for a replay; its envelope,
        or None when it is not (or no longer) failed."""
        pool = await self.database.pool()
        payload = await pool.fetchval(
            """
            UPDATE notification_deliveries
            SET status = 'pending', updated_at = now()
            WHERE tenant_id = $1 AND notification_id = $2 AND status IN ('failed', 'refused')
            RETURNING payload
            """,
            tenant,
            notification_id,
        )
        if payload is None:
            return None
        value = _json(payload)
        return value if isinstance(value, dict) else None

    async def status(self, tenant: str, notification_id: str) -> str | None:
        pool = await self.database.pool()
        value = await pool.fetchval(
            "SELECT status FROM notification_deliveries"
            " WHERE tenant_id = $1 AND notification_id = $2",
            tenant,
            notification_id,
        )
        return None if value is None else str(value)

    async def restore(self, tenant: str, notification_id: str, status: str) -> None:
        """Undo `reopen` when the replay could not be published."""
        pool = await self.database.pool()
        await pool.execute(
            "UPDATE notification_deliveries SET status = $3"
            " WHERE tenant_id = $1 AND notification_id = $2 AND status = 'pending'",
            tenant,
            notification_id,
            status,
        )
