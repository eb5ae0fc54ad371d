"""The alert path end to end on the real broker and database, on a fake clock: metric
events → pending → firing → resolved, one notification per transition per channel,
grouping, a restart between firing and resolved, and dead letters."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import asyncpg
import orjson
from aiohttp.test_utils import TestClient

from services.alerting.keys import ENGINE, RELAY
from services.alerting.rules import rule_from_doc
from services.alerting.store import upsert_rule
from shared.contracts import validate_envelope
from shared.topology import Topology
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    Tap,
    add_channel,
    engine_of,
    metric_event,
)
from tests.support.eventually import eventually

RULE_ID = str(uuid.uuid4())


async def _rule(db: asyncpg.Connection, **doc: object) -> str:
    rule = rule_from_doc(
        {
            "name": "HighLatency",
            "channels": ["ops", "team"],
            "annotations": {"summary": "{{ labels.service }} p95 {{ value }}s"},
            **doc,
        },
        tenant=TENANT,
        rule_id=str(uuid.uuid4()),
    )
    return await upsert_rule(db, rule)


async def _step(
    client: TestClient, send: Send, clock: FakeClock, seconds: float, value: float, **labels: str
) -> str:
    """Advance the clock, publish one sample through the broker, tick; the alert's state."""
    clock.advance(seconds)
    await send(client, [metric_event("latency", value, labels or {"service": "api"}, at=clock())])
    await engine_of(client).tick()
    (alert,) = [
        a for a in engine_of(client).alerts.values() if a.labels == (labels or {"service": "api"})
    ]
    return alert.state


async def test_threshold_pending_firing_resolved_one_notification_each(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops", "webhook")
    await add_channel(db, "team", "slack")
    rule_id = await _rule(db, condition="latency > 1 for 5m")
    client = await start_alerting()

    assert await _step(client, send_metrics, clock, 10, 0.5) == "inactive"
    assert await _step(client, send_metrics, clock, 10, 1.5) == "pending"
    assert await _step(client, send_metrics, clock, 120, 1.6) == "pending"
    await notify_tap.quiet(client, 0)
    assert await _step(client, send_metrics, clock, 180, 1.7) == "firing"
    firing = await notify_tap.wait(2)
    assert await _step(client, send_metrics, clock, 10, 1.8) == "firing"  # no second firing
    await notify_tap.quiet(client, 2)
    assert await _step(client, send_metrics, clock, 10, 0.2) == "resolved"
    envelopes = await notify_tap.quiet(client, 4)

    by_status = {(e["data"]["status"], e["data"]["channel"]) for e in envelopes}
    assert by_status == {
        ("firing", "ops"),
        ("firing", "team"),
        ("resolved", "ops"),
        ("resolved", "team"),
    }
    for message, envelope in zip(notify_tap.messages, envelopes, strict=True):
        validate_envelope(envelope)
        data = envelope["data"]
        assert message.message_id == data["notification_id"] == envelope["id"]
        assert (
            message.routing_key
            == data["channel_type"]
            == {"ops": "webhook", "team": "slack"}[data["channel"]]
        )
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert data["rule_id"] == rule_id and data["rule_name"] == "HighLatency"
        (alert,) = data["alerts"]
        assert alert["labels"] == {
            "alertname": "HighLatency",
            "severity": "warning",
            "service": "api",
        }
        assert alert["status"] == data["status"]
    assert len({e["data"]["notification_id"] for e in envelopes}) == 4
    fired = firing[0]["data"]["alerts"][0]
    assert fired["annotations"] == {"summary": "api p95 1.7s"}
    assert fired["ends_at"] is None and fired["value"] == 1.7
    resolved = envelopes[-1]["data"]["alerts"][0]
    assert resolved["starts_at"] == fired["starts_at"] and resolved["ends_at"] is not None

    history = await db.fetch("SELECT from_state, to_state FROM alert_transitions ORDER BY id")
    assert [(h["from_state"], h["to_state"]) for h in history] == [
        ("inactive", "pending"),
        ("pending", "firing"),
        ("firing", "resolved"),
    ]
    sent = await db.fetchval("SELECT count(*) FROM alert_outbox WHERE sent_at IS NOT NULL")
    assert sent == 4


async def test_alerts_of_one_rule_within_group_wait_go_out_together(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops", "webhook")
    await add_channel(db, "team", "slack")
    await _rule(db, condition="latency > 1")
    client = await start_alerting(group_wait=30)
    engine = engine_of(client)

    await send_metrics(client, [metric_event("latency", 5, {"service": "api"}, at=clock())])
    await engine.tick()
    clock.advance(10)
    await send_metrics(client, [metric_event("latency", 5, {"service": "ingest"}, at=clock())])
    await engine.tick()
    await notify_tap.quiet(client, 0)  # still waiting for the group
    clock.advance(20)
    await engine.flush_groups()
    envelopes = await notify_tap.quiet(client, 2)  # one per channel, both alerts in each
    for envelope in envelopes:
        services = sorted(a["labels"]["service"] for a in envelope["data"]["alerts"])
        assert services == ["api", "ingest"]
        assert envelope["data"]["status"] == "firing"


async def test_restart_between_firing_and_resolved_sends_each_once(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops", "webhook")
    await _rule(db, condition="latency > 1", channels=["ops"])
    first = await start_alerting()
    await send_metrics(first, [metric_event("latency", 5, {"service": "api"}, at=clock())])
    await first.app[ENGINE].tick()  # type: ignore[index]
    await notify_tap.wait(1)
    await first.close()

    clock.advance(30)
    second = await start_alerting()
    engine = engine_of(second)
    (alert,) = engine.alerts.values()
    assert alert.state == "firing" and alert.announced
    await send_metrics(second, [metric_event("latency", 7, {"service": "api"}, at=clock())])
    await engine.tick()  # still firing: nothing new
    await notify_tap.quiet(second, 1)
    clock.advance(30)
    await send_metrics(second, [metric_event("latency", 0.1, {"service": "api"}, at=clock())])
    await engine.tick()
    envelopes = await notify_tap.quiet(second, 2)
    assert [e["data"]["status"] for e in envelopes] == ["firing", "resolved"]


async def test_committed_notification_survives_a_broker_less_shutdown(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    """The outbox row is written with the transition; a relay that could not publish
    leaves it pending, and the next start publishes it (same notification id)."""
    await add_channel(db, "ops", "webhook")
    await _rule(db, condition="latency > 1", channels=["ops"])
    first = await start_alerting()
    relay = first.app[RELAY]  # type: ignore[index]
    await relay.stop()  # as if the process died before publishing
    await send_metrics(first, [metric_event("latency", 5, {"service": "api"}, at=clock())])
    await first.app[ENGINE].tick()  # type: ignore[index]
    pending = await db.fetch("SELECT notification_id FROM alert_outbox WHERE sent_at IS NULL")
    assert len(pending) == 1
    await first.close()
    assert notify_tap.messages == []

    second = await start_alerting()
    (envelope,) = await notify_tap.quiet(second, 1)
    assert envelope["data"]["notification_id"] == str(pending[0]["notification_id"])


async def test_bad_messages_and_events_are_dead_lettered(
    amqp: aio_pika.abc.AbstractConnection,
    prefix: str,
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
) -> None:
    await _rule(db, condition="latency > 1")
    client = await start_alerting()
    await send_metrics(client, b"not json")
    good = metric_event("latency", 5, {"service": "api"}, at=clock())
    bad = metric_event("latency", 5, at=clock())
    bad["data"]["value"] = "high"
    # Postgres refuses NUL in the alert row's labels: stored, it would fail every tick.
    nul = metric_event("latency", 5, {"service": "a\x00"}, at=clock())
    await send_metrics(client, [good, bad, nul])
    await engine_of(client).tick()
    assert [a.state for a in engine_of(client).alerts.values()] == ["firing"]

    channel = await amqp.channel()
    queue = await channel.get_queue(Topology(prefix).alerting_dlq)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def take() -> int:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        return len(got)

    await eventually(take, lambda n: n >= 3, what="3 dead letters")
    reasons = sorted(str(m.headers["x-belfry-stage"]) for m in got)
    assert reasons == ["decode", "validate", "validate"]
    validated = [m for m in got if m.headers["x-belfry-stage"] == "validate"]
    assert [orjson.loads(m.body)[0]["id"] for m in validated] == [bad["id"], nul["id"]]
    assert "data.value" in str(validated[0].headers["x-belfry-reason"])
    assert "NUL" in str(validated[1].headers["x-belfry-reason"])
    await asyncio.sleep(0)


async def test_repeat_interval_announces_a_still_firing_alert_again(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops", "webhook")
    await _rule(db, condition="latency > 1", channels=["ops"], repeat_interval="1m")
    client = await start_alerting()
    assert await _step(client, send_metrics, clock, 1, 5) == "firing"
    await notify_tap.wait(1)
    assert await _step(client, send_metrics, clock, 30, 5) == "firing"
    await notify_tap.quiet(client, 1)  # inside the repeat interval: nothing
    assert await _step(client, send_metrics, clock, 40, 5) == "firing"
    envelopes = await notify_tap.quiet(client, 2)  # 70 s after the first: once more
    assert [e["data"]["status"] for e in envelopes] == ["firing", "firing"]
    assert envelopes[0]["data"]["notification_id"] != envelopes[1]["data"]["notification_id"]


async def test_a_series_gone_quiet_becomes_a_no_data_alert(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops", "webhook")
    await _rule(
        db,
        name="HeartbeatMissing",
        condition="count(heartbeat[60s]) < 1",
        no_data={"mode": "alert", "windows": 1},
        channels=["ops"],
    )
    client = await start_alerting()
    await send_metrics(client, [metric_event("heartbeat", 1, {"service": "api"}, at=clock())])
    engine = engine_of(client)
    await engine.tick()
    (alert,) = engine.alerts.values()
    assert alert.state == "inactive"
    await notify_tap.quiet(client, 0)
    clock.advance(61)  # no heartbeat for a whole window
    await engine.tick()
    (alert,) = engine.alerts.values()
    assert alert.state == "firing" and alert.no_data
    (envelope,) = await notify_tap.quiet(client, 1)
    (sent,) = envelope["data"]["alerts"]
    assert sent["status"] == "firing" and sent["value"] is None
    assert sent["labels"]["service"] == "api"
