"""When notifications go out, end to end on the real broker and database to a real
webhook receiver: a rule's `cooldown` and its own `group_wait` on the fake clock, and the
time from a threshold crossing to the webhook for a rule with `for: 0s` and
`group_wait: 0` in real time (the default tick interval, the evaluation brought forward
by the sample's arrival)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aio_pika
import asyncpg
import orjson

from services.alerting.keys import AlertingDeps
from services.alerting.rules import rule_from_doc
from services.alerting.store import upsert_rule
from shared.contracts import BATCH_V1
from shared.topology import Topology
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Receiver,
    Send,
    StartAlerting,
    add_webhook,
    engine_of,
    metric_event,
    webhook_alerts,
)

API = {"service": "api"}


async def _rule(db: asyncpg.Connection, **doc: Any) -> None:
    rule = rule_from_doc(
        {"name": "Latency", "condition": "latency > 1", "channels": ["hook"], **doc},
        tenant=TENANT,
        rule_id=str(uuid.uuid4()),
    )
    await upsert_rule(db, rule)


async def test_cooldown_holds_a_flapping_alert_to_one_firing_per_cooldown(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    webhook_receiver: Receiver,
) -> None:
    await add_webhook(db, "hook", webhook_receiver)
    await _rule(db, cooldown="5m")
    client = await start_alerting()
    engine = engine_of(client)

    async def step(seconds: float, value: float) -> str:
        clock.advance(seconds)
        await send_metrics(client, [metric_event("latency", value, API, at=clock())])
        await engine.tick()
        (alert,) = engine.alerts.values()
        return alert.state

    assert await step(0, 5) == "firing"
    assert await step(30, 0.5) == "resolved"
    await webhook_receiver.wait(2)
    assert await step(30, 5) == "firing"  # 60 s after the first firing: held
    assert await step(30, 0.5) == "resolved"  # never announced: nothing to resolve
    assert await step(30, 5) == "firing"  # held again
    assert await step(200, 5) == "firing"  # 320 s after the first firing: it goes out
    await webhook_receiver.wait(3)
    assert await step(30, 0.5) == "resolved"  # 320 s after the first resolved
    await webhook_receiver.wait(4)
    sent = [status for status, _ in webhook_alerts(webhook_receiver)]
    assert sent == ["firing", "resolved", "firing", "resolved"]
    history = await db.fetch("SELECT to_state, reason FROM alert_transitions ORDER BY id")
    assert "held by the cooldown" in history[2]["reason"]


async def test_a_rule_s_group_wait_overrides_the_service_s(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    webhook_receiver: Receiver,
) -> None:
    await add_webhook(db, "hook", webhook_receiver)
    await _rule(db, name="Critical", condition="errors > 1", group_wait="0s")
    await _rule(db, name="Latency")  # the service's group_wait: 30 s
    client = await start_alerting(group_wait=30)
    engine = engine_of(client)
    await send_metrics(
        client,
        [
            metric_event("errors", 5, API, at=clock()),
            metric_event("latency", 5, API, at=clock()),
        ],
    )
    await engine.tick()
    (request,) = await webhook_receiver.wait(1)
    assert request.json()["groupLabels"] == {"alertname": "Critical"}
    clock.advance(29)
    await engine.flush_groups()
    clock.advance(1)
    await engine.flush_groups()
    requests = await webhook_receiver.wait(2)
    assert [r.json()["groupLabels"]["alertname"] for r in requests] == ["Critical", "Latency"]


async def test_threshold_crossing_reaches_the_webhook_within_two_seconds(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    amqp: aio_pika.abc.AbstractConnection,
    prefix: str,
    webhook_receiver: Receiver,
) -> None:
    """Real time, the default tick interval (5 s) and group wait (10 s): a rule with
    `for: 0s` and `group_wait: 0` is evaluated when its sample arrives and its
    notification grouped at once."""
    await add_webhook(db, "hook", webhook_receiver)
    await _rule(db, condition="latency > 1 for 0s", group_wait=0, severity="critical")
    client = await start_alerting(
        deps=AlertingDeps(), eval_interval=5.0, group_wait=10.0, eval_on_arrival=0.25
    )
    channel = await amqp.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(Topology(prefix).metrics_exchange)
    engine = engine_of(client)
    for value in (0.5, 5.0):  # below the threshold first: the series and its alert exist
        crossed = time.monotonic()
        event = metric_event("latency", value, API, at=engine.clock())
        await exchange.publish(
            aio_pika.Message(orjson.dumps([event]), type=BATCH_V1, message_id=str(uuid.uuid4())),
            routing_key="metric.test",
        )
    (request,) = await webhook_receiver.wait(1, timeout=15)
    elapsed = request.at - crossed
    assert request.json()["status"] == "firing"
    assert elapsed <= 2.0, f"{elapsed:.2f} s from crossing to the webhook"
    await channel.close()
