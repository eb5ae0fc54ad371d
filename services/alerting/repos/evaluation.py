"""The engine's persistence of alerts: one evaluation's alert rows, transitions and outbox
items in ONE transaction (`save_evaluation`), so a state change and the notification it
owes are committed together; and the alerts' load at start."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.alerting.engine.state import Alert, Change
from services.alerting.repos.codec import dumps, loads


@dataclass(frozen=True, slots=True)
class OutboxItem:
    tenant: str
    rule_id: str
    status: str
    fingerprint: str
    alert: dict[str, Any]
    rule: dict[str, Any]  # {name, channels}
    traceparent: str | None
    created_at: datetime


_ALERT_COLUMNS = (
    "fingerprint, rule_id, tenant_id, labels, state, severity, value, pending_since, fired_at,"
    " resolved_at, last_breach_at, last_notified_at, announced, no_data, acknowledged_by,"
    " acknowledged_at, silence_id, annotations, last_firing_at, last_resolved_at"
)


def _alert_row(a: Alert) -> tuple[Any, ...]:
    return (
        a.fingerprint,
        a.rule_id,
        a.tenant,
        dumps(a.labels),
        a.state,
        a.severity,
        a.value,
        a.pending_since,
        a.fired_at,
        a.resolved_at,
        a.last_breach_at,
        a.last_notified_at,
        a.announced,
        a.no_data,
        a.acknowledged_by,
        a.acknowledged_at,
        a.silence_id,
        dumps(a.annotations),
        a.last_firing_at,
        a.last_resolved_at,
    )


def alert_from_row(row: Any) -> Alert:
    return Alert(
        fingerprint=row["fingerprint"],
        rule_id=str(row["rule_id"]),
        tenant=row["tenant_id"],
        labels=dict(loads(row["labels"])),
        severity=row["severity"],
        state=row["state"],
        value=row["value"],
        pending_since=row["pending_since"],
        fired_at=row["fired_at"],
        resolved_at=row["resolved_at"],
        last_breach_at=row["last_breach_at"],
        last_notified_at=row["last_notified_at"],
        announced=row["announced"],
        no_data=row["no_data"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"],
        silence_id=None if row["silence_id"] is None else str(row["silence_id"]),
        annotations=dict(loads(row["annotations"])),
        last_firing_at=row["last_firing_at"],
        last_resolved_at=row["last_resolved_at"],
    )


UPSERT_ALERT = f"""
INSERT INTO alerts ({_ALERT_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20)
ON CONFLICT (fingerprint) DO UPDATE SET
    state = EXCLUDED.state, severity = EXCLUDED.severity, value = EXCLUDED.value,
    pending_since = EXCLUDED.pending_since, fired_at = EXCLUDED.fired_at,
    resolved_at = EXCLUDED.resolved_at, last_breach_at = EXCLUDED.last_breach_at,
    last_notified_at = EXCLUDED.last_notified_at, announced = EXCLUDED.announced,
    no_data = EXCLUDED.no_data, acknowledged_by = EXCLUDED.acknowledged_by,
    acknowledged_at = EXCLUDED.acknowledged_at, silence_id = EXCLUDED.silence_id,
    annotations = EXCLUDED.annotations, last_firing_at = EXCLUDED.last_firing_at,
    last_resolved_at = EXCLUDED.last_resolved_at, updated_at = now()
"""

INSERT_TRANSITION = """
INSERT INTO alert_transitions (fingerprint, tenant_id, rule_id, from_state, to_state, at,
                               value, reason, fired_at, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""

INSERT_ITEM = """
INSERT INTO alert_outbox_items (tenant_id, rule_id, status, fingerprint, alert, rule,
                                traceparent, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""


async def save_evaluation(
    conn: asyncpg.Connection,
    alerts: Sequence[Alert],
    changes: Sequence[Change],
    items: Sequence[OutboxItem],
) -> None:
    """Alert rows (new or changed), transitions and outbox items, in one transaction."""
    async with conn.transaction():
        if alerts:
            await conn.executemany(UPSERT_ALERT, [_alert_row(a) for a in alerts])
        transitions = [c for c in changes if c.is_transition]
        if transitions:
            await conn.executemany(
                INSERT_TRANSITION,
                [
                    (
                        c.alert.fingerprint,
                        c.alert.tenant,
                        c.alert.rule_id,
                        c.from_state,
                        c.to_state,
                        c.at,
                        c.alert.value,
                        c.reason[:500],
                        c.fired_at,
                        c.actor,
                    )
                    for c in transitions
                ],
            )
        if items:
            await conn.executemany(
                INSERT_ITEM,
                [
                    (
                        i.tenant,
                        i.rule_id,
                        i.status,
                        i.fingerprint,
                        dumps(i.alert),
                        dumps(i.rule),
                        i.traceparent,
                        i.created_at,
                    )
                    for i in items
                ],
            )


async def load_alerts(conn: asyncpg.Connection | asyncpg.Pool) -> list[Alert]:
    rows = await conn.fetch(f"SELECT {_ALERT_COLUMNS} FROM alerts")
    return [alert_from_row(r) for r in rows]
