"""Postgres persistence of the engine: rules, alerts, transitions and outbox items.

`save_evaluation` writes one evaluation's alert rows, transitions and outbox items in ONE
transaction, so a state change and the notification it owes are committed together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.alerting.engine.state import Alert, Change
from services.alerting.files import Channel
from services.alerting.rules.model import Rule
from services.alerting.rules.validate import (
    RuleError,
    matchers_from_doc,
    rule_from_doc,
    stored_doc,
)


def dumps(value: Any) -> str:
    """A jsonb parameter. The pool is shared with the notify package, so no type codec is
    installed on it: jsonb goes in and comes out as text."""
    return orjson.dumps(value).decode()


def loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


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


def rule_from_row(row: Any) -> Rule:
    doc = dict(loads(row["spec"]))
    doc["enabled"] = row["enabled"]
    return rule_from_doc(doc, tenant=row["tenant_id"], rule_id=str(row["id"]))


async def load_rules(conn: asyncpg.Connection | asyncpg.Pool) -> list[Rule]:
    rows = await conn.fetch("SELECT id, tenant_id, spec, enabled FROM alert_rules")
    rules = []
    for row in rows:
        try:
            rules.append(rule_from_row(row))
        except RuleError:  # stored by an older version with other rules: skip, don't crash
            continue
    return rules


async def upsert_rule(
    conn: asyncpg.Connection | asyncpg.Pool, rule: Rule, source: str = "api"
) -> str:
    """Insert or replace (by tenant + name for file rules); returns the stored id."""
    row = await conn.fetchrow(
        """INSERT INTO alert_rules (id, tenant_id, name, spec, enabled, source)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, name) DO UPDATE SET spec = EXCLUDED.spec,
               enabled = EXCLUDED.enabled, source = EXCLUDED.source, updated_at = now()
           RETURNING id""",
        rule.id,
        rule.tenant,
        rule.name,
        dumps(stored_doc(rule)),
        rule.enabled,
        source,
    )
    return str(row["id"])


async def active_silences(
    conn: asyncpg.Connection | asyncpg.Pool, now: datetime
) -> list[dict[str, Any]]:
    """The silences in force at `now`, their matchers built (and regexes compiled) once
    per tick rather than once per alert."""
    rows = await conn.fetch(
        "SELECT id, tenant_id, matchers FROM alert_silences"
        " WHERE starts_at <= $1 AND ends_at > $1 ORDER BY starts_at, id",
        now,
    )
    silences = []
    for r in rows:
        errors: dict[str, str] = {}
        matchers = matchers_from_doc(loads(r["matchers"]), errors)
        if errors:  # stored by an older version (e.g. a regex RE2 refuses): it matches nothing
            continue
        silences.append({"id": str(r["id"]), "tenant": r["tenant_id"], "matchers": matchers})
    return silences


async def upsert_channel(conn: asyncpg.Connection | asyncpg.Pool, channel: Channel) -> None:
    """Insert or replace a channel by (tenant, name) (the channels file's)."""
    await conn.execute(
        """INSERT INTO alert_channels (tenant_id, name, type, config, enabled)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, name) DO UPDATE SET type = EXCLUDED.type,
               config = EXCLUDED.config, enabled = EXCLUDED.enabled, updated_at = now()""",
        channel.tenant,
        channel.name,
        channel.type,
        dumps(channel.config),
        channel.enabled,
    )
