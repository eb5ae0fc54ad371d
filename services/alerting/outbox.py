"""The outbox: outbox items (one per alert that changed to firing/resolved, or that
someone acknowledged; written with the state change) become notification messages, and a
relay publishes those.

Grouping: items of one rule and one status wait until the first of them is `group_wait`
old (on the injectable clock; the rule's own `group_wait`, else the service's), then
become ONE notification per channel of the rule, in one transaction (items marked
grouped, `alert_outbox` rows inserted with a new UUID each: the notification id, stable
forever). The relay publishes pending rows under publisher
confirms and marks them sent after the confirm, so a crash re-publishes (same id) rather
than loses; receivers dedupe by the id (`webhook-id`). While Postgres or the broker is
away the relay backs off and logs when it starts failing and when it recovers.

Firing and resolved go out as `alert.notification.v1` (what every consumer and replay
already reads); an acknowledgement as `alert.notification.v2` (the version that has the
`acknowledged` status), and only to the rule's channels whose type has an acknowledge
action (`ACKNOWLEDGING_TYPES`: PagerDuty); the others are not sent it at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aio_pika
import asyncpg
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind

from services.alerting.metrics import AlertingMetrics, unserved
from services.alerting.notify.channels import ACKNOWLEDGING_TYPES
from services.alerting.retrying import Failures
from services.alerting.store import dumps, loads
from shared.broker import Broker
from shared.contracts import (
    ALERT_NOTIFICATION_V1,
    ALERT_NOTIFICATION_V2,
    make_envelope,
    validate_envelope,
)
from shared.db import Database
from shared.failures import error_text
from shared.tasks import stop_task
from shared.topology import Topology
from shared.tracing import inject_headers, messaging_attributes, span_context_of

log = logging.getLogger("belfry.alerting.outbox")

RELAY_BACKOFF_MAX = 10.0  # seconds between relay passes at most while they fail

# An item's `rule` carries the rule's group_wait (null: the service's, $2 seconds); the
# shortest of a group's items counts, so a rule changed to a shorter wait takes effect.
DUE_GROUPS = """
SELECT tenant_id, rule_id, status, min(created_at) AS first
FROM alert_outbox_items WHERE grouped_at IS NULL
GROUP BY tenant_id, rule_id, status
HAVING min(created_at)
       + make_interval(secs => min(COALESCE((rule->>'group_wait')::float8, $2))) <= $1
ORDER BY first
"""

GROUP_ITEMS = """
SELECT id, fingerprint, alert, rule, traceparent, created_at FROM alert_outbox_items
WHERE tenant_id = $1 AND rule_id = $2 AND status = $3 AND grouped_at IS NULL
ORDER BY id FOR UPDATE
"""

INSERT_NOTIFICATION = """
INSERT INTO alert_outbox (notification_id, tenant_id, rule_id, channel, channel_type, status,
                          envelope, traceparent, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


def group_key(rule_id: str, rule_name: str) -> str:
    """Alertmanager's groupKey shape: `{}:{alertname="..."}` with the rule id in front."""
    escaped = rule_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{}}/{rule_id}:{{alertname="{escaped}"}}'


async def group_due(db: Database, now: datetime, group_wait: float, external_url: str) -> int:
    """Turn every due group of outbox items into notifications; returns how many."""
    pool = await db.pool()
    made = 0
    async with pool.acquire() as conn, conn.transaction():
        groups = await conn.fetch(DUE_GROUPS, now, float(group_wait))
        for group in groups:
            made += await _group(conn, group, now, external_url)
    return made


async def _group(conn: asyncpg.Connection, group: Any, now: datetime, external_url: str) -> int:
    tenant, rule_id, status = group["tenant_id"], str(group["rule_id"]), group["status"]
    items = await conn.fetch(GROUP_ITEMS, tenant, rule_id, status)
    if not items:
        return 0
    rule = loads(items[-1]["rule"])
    # One entry per alert: a later item of the same alert replaces an earlier one.
    alerts = {item["fingerprint"]: loads(item["alert"]) for item in items}
    traceparent = next((i["traceparent"] for i in items if i["traceparent"]), None)
    channels = await _channels(conn, tenant, rule_id, rule)
    if status == "acknowledged":
        channels = [c for c in channels if c["type"] in ACKNOWLEDGING_TYPES]
    made = 0
    for channel in channels:
        notification_id = str(uuid.uuid4())
        data = {
            "notification_id": notification_id,
            "channel": channel["name"],
            "channel_type": channel["type"],
            "rule_id": rule_id,
            "rule_name": rule["name"],
            "status": status,
            "group_key": group_key(rule_id, rule["name"]),
            "group_labels": {"alertname": rule["name"]},
            "external_url": external_url,
            "alerts": [alerts[fp] for fp in sorted(alerts)],
        }
        envelope = make_envelope(
            notification_id,
            ALERT_NOTIFICATION_V2 if status == "acknowledged" else ALERT_NOTIFICATION_V1,
            tenant,
            group["first"].isoformat(),
            now.isoformat(),
            data,
            {"traceparent": traceparent} if traceparent else None,
        )
        validate_envelope(envelope)  # a bug here must not reach a receiver
        await conn.execute(
            INSERT_NOTIFICATION,
            notification_id,
            tenant,
            rule_id,
            channel["name"],
            channel["type"],
            status,
            dumps(envelope),
            traceparent,
            now,
        )
        made += 1
    await conn.execute(
        "UPDATE alert_outbox_items SET grouped_at = $1 WHERE id = ANY($2::bigint[])",
        now,
        [i["id"] for i in items],
    )
    return made


async def _channels(
    conn: asyncpg.Connection, tenant: str, rule_id: str, rule: dict[str, Any]
) -> list[Any]:
    """The rule's enabled channels, in the rule's order; the missing ones logged."""
    channels = await conn.fetch(
        "SELECT name, type FROM alert_channels"
        " WHERE tenant_id = $1 AND name = ANY($2::text[]) AND enabled",
        tenant,
        list(rule.get("channels", [])),
    )
    found = {c["name"] for c in channels}
    missing = [c for c in rule.get("channels", []) if c not in found]
    if missing:
        log.warning(
            "notification channels missing or disabled",
            extra={"rule": rule["name"], "rule_id": rule_id, "tenant": tenant, "channels": missing},
        )
    return sorted(channels, key=lambda c: rule["channels"].index(c["name"]))


class OutboxRelay:
    """Publishes pending `alert_outbox` rows to `<prefix>.notify` (routing key = channel
    type) and marks each sent after the broker confirmed it."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        topo: Topology,
        *,
        interval: float = 1.0,
        tracer: trace.Tracer | None = None,
        clock: Callable[[], datetime],
        metrics: AlertingMetrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics or unserved()  # the app's (shared.prom); served nowhere: tests
        self.broker = broker
        self.topo = topo
        self.interval = interval
        self.tracer = tracer
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0
        self.last_error: str | None = None
        self.failures = Failures(log, "outbox relay", base=interval, cap=RELAY_BACKOFF_MAX)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alerting-outbox-relay")

    async def stop(self) -> None:
        """One last pass (what is committed goes out if the broker is there), then stop."""
        self._stopping = True
        self._wake.set()
        await stop_task(self._task, grace=10)

    async def _run(self) -> None:
        """Poll every `interval` (or when woken: a commit, the broker back); while passes
        fail, wait longer each time (a wake still brings the next pass forward)."""
        failures = self.failures
        delay = self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                await self.publish_pending()
            except Exception as exc:  # database or broker away: try again, later each time
                self.last_error = error_text(exc)[:300]
                delay = failures.failed(exc)
            else:
                failures.succeeded()
                delay = self.interval
            if self._stopping:
                return

    async def publish_pending(self, limit: int = 100) -> int:
        """Publish pending notifications in order until none is left; returns how many.

        Rows are claimed with FOR UPDATE SKIP LOCKED inside the transaction that marks them
        sent, so two relays (an instance handing over to another) never publish one row
        twice; a crash before the commit re-publishes the same notification id."""
        sent = 0
        while self.broker.available:
            pool = await self.db.pool()
            failed: tuple[str, str] | None = None
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "SELECT notification_id, channel_type, envelope, traceparent"
                    " FROM alert_outbox WHERE sent_at IS NULL"
                    " ORDER BY created_at, notification_id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    limit,
                )
                for row in rows:
                    notification_id = str(row["notification_id"])
                    try:
                        await self._publish(row)
                    except Exception as exc:
                        failed = (notification_id, error_text(exc)[:500])
                        break
                    await conn.execute(
                        "UPDATE alert_outbox SET sent_at = $2, attempts = attempts + 1,"
                        " last_error = NULL WHERE notification_id = $1",
                        notification_id,
                        self.clock(),
                    )
                    sent += 1
                    self.published += 1
            if failed is not None:
                await pool.execute(
                    "UPDATE alert_outbox SET attempts = attempts + 1, last_error = $2"
                    " WHERE notification_id = $1",
                    *failed,
                )
                raise ConnectionError(f"publishing notification {failed[0]} failed: {failed[1]}")
            if len(rows) < limit:
                break
        if sent:
            self.last_error = None
        return sent

    async def _publish(self, row: Any) -> None:
        channel = self.broker.channel
        if channel is None or channel.is_closed:
            raise ConnectionError("broker channel closed")
        exchange = await channel.get_exchange(self.topo.notify_exchange, ensure=False)
        envelope = loads(row["envelope"])
        routing_key = row["channel_type"]
        notification_id = str(row["notification_id"])
        carrier = {"traceparent": row["traceparent"]} if row["traceparent"] else None
        parent_ctx = span_context_of(carrier)
        headers: dict[str, Any] = {}
        if self.tracer is None:
            if row["traceparent"]:
                headers["traceparent"] = row["traceparent"]
            await self._send(exchange, envelope, notification_id, routing_key, headers)
        else:
            parent = trace.set_span_in_context(NonRecordingSpan(parent_ctx)) if parent_ctx else None
            attributes = messaging_attributes(self.topo.notify_exchange, routing_key, "publish", 1)
            attributes["messaging.message.id"] = notification_id
            with self.tracer.start_as_current_span(
                f"publish {self.topo.notify_exchange}",
                context=parent,
                kind=SpanKind.PRODUCER,
                links=[Link(parent_ctx)] if parent_ctx else None,
                attributes=attributes,
            ):
                inject_headers(headers)
                await self._send(exchange, envelope, notification_id, routing_key, headers)
        self.metrics.notifications_published.labels(routing_key).inc()
        log.info(
            "notification published",
            extra={
                "notification_id": notification_id,
                "channel": envelope["data"]["channel"],
                "channel_type": routing_key,
                "rule": envelope["data"]["rule_name"],
                "rule_id": envelope["data"]["rule_id"],
                "status": envelope["data"]["status"],
                "tenant": envelope["tenant"],
            },
        )

    async def _send(
        self,
        exchange: aio_pika.abc.AbstractExchange,
        envelope: dict[str, Any],
        notification_id: str,
        routing_key: str,
        headers: dict[str, Any],
    ) -> None:
        message = aio_pika.Message(
            dumps(envelope).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=notification_id,
            type=str(envelope.get("type") or ALERT_NOTIFICATION_V1),
            app_id="belfry-alerting",
            headers=headers,
        )
        await asyncio.wait_for(exchange.publish(message, routing_key, mandatory=True), 10)

    async def pending(self) -> int:
        pool = await self.db.pool()
        return int(await pool.fetchval("SELECT count(*) FROM alert_outbox WHERE sent_at IS NULL"))
