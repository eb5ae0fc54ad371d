"""Webhook delivery end to end: a notification message on the real broker, the channel
in Postgres, a real aiohttp receiver that verifies signatures with the reference
`standardwebhooks` package; retries through the real delay queues."""

from __future__ import annotations

import base64
import os
from typing import Any

import aio_pika
import asyncpg
from standardwebhooks.webhooks import Webhook

from services.alerting.notify.metrics import NotifyMetrics
from tests.alerting.notify.conftest import (
    AddChannel,
    Publish,
    Receiver,
    StartNotify,
    attempts,
    dead_letters,
    delivery,
    notification,
)

# How early RabbitMQ may expire a delayed retry, measured against our clock.
BROKER_TTL_SLACK = 0.05

V4_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
ALERT_KEYS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def counter(metrics: NotifyMetrics, outcome: str, owner: str = "tenant") -> float:
    """Webhook deliveries counted by one service (its own metrics: they start at zero)."""
    value = metrics.notifications.labels("webhook", outcome, owner)._value.get()
    return float(value)


async def test_500_twice_then_200_is_three_signed_attempts_and_one_delivery(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    hook.answers = [(500, {}), (500, {})]
    old, new = secret(), secret()
    await add_channel(
        "ops-hook",
        "webhook",
        {"url": f"{hook.url}/alerts", "secrets": [new, old], "headers": {"X-Team": "ops"}},
    )
    await start_notify(max_attempts=5)
    env = notification("ops-hook", "webhook")
    nid = env["data"]["notification_id"]
    await publish(env)

    row = await delivery(db, nid, "delivered")
    requests = await hook.wait(3)
    assert len(requests) == 3 and row["attempts"] == 3 and row["last_error"] is None
    assert {r.headers["webhook-id"] for r in requests} == {nid}  # stable across retries
    for r in requests:
        for s in (old, new):  # either secret verifies: rotation without a gap
            body = Webhook(s).verify(r.body, r.headers)
        assert r.headers["X-Team"] == "ops" and r.path == "/alerts"
    assert set(body) == V4_KEYS and body["version"] == "4" and body["truncatedAlerts"] == 0
    assert body["status"] == "firing" and body["receiver"] == "ops-hook"
    (alert,) = body["alerts"]
    assert set(alert) == ALERT_KEYS and alert["endsAt"] == "0001-01-01T00:00:00Z"
    rows = await attempts(db, nid)
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in rows] == [
        (1, "retried", 500),
        (2, "retried", 500),
        (3, "delivered", 200),
    ]
    assert all(a["latency_ms"] > 0 and a["at"] is not None for a in rows)
    assert rows[0]["error"].startswith("HTTP 500")


async def test_429_retry_after_is_waited(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    hook.answers = [(429, {"Retry-After": "2"})]
    await add_channel("h", "webhook", {"url": hook.url})
    await start_notify()  # backoff 20 ms: only the Retry-After can make it wait
    env = notification("h", "webhook")
    await publish(env)
    await delivery(db, env["data"]["notification_id"], "delivered")
    first, second = await hook.wait(2)
    # The broker's message TTL holds the retry, on its own clock: a CI run saw it expire
    # 4 ms early against ours (1.996 s). The backoff alone would retry after ~20 ms.
    assert second.at - first.at >= 2.0 - BROKER_TTL_SLACK


async def test_404_is_not_retried(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
    notify_channel: aio_pika.abc.AbstractChannel,
    prefix: str,
) -> None:
    hook: Receiver = await receiver()
    hook.answers = [(404, {})]
    await add_channel("h", "webhook", {"url": hook.url})
    await start_notify(max_attempts=5)
    env = notification("h", "webhook")
    nid = env["data"]["notification_id"]
    await publish(env)
    row = await delivery(db, nid, "failed")
    assert row["attempts"] == 1 and row["last_error"].startswith("HTTP 404")
    (dead,) = await dead_letters(notify_channel, prefix, "webhook", 1)
    assert str((dead.headers or {})["x-belfry-reason"]).startswith("HTTP 404")
    assert len(hook.requests) == 1


async def test_max_attempts_end_in_dlq_failed_and_metric(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
    notify_channel: aio_pika.abc.AbstractChannel,
    prefix: str,
) -> None:
    hook: Receiver = await receiver()
    hook.answers = [(503, {})] * 10
    await add_channel("h", "webhook", {"url": hook.url})
    service = await start_notify(max_attempts=3)
    env = notification("h", "webhook")
    nid = env["data"]["notification_id"]
    await publish(env)
    row = await delivery(db, nid, "failed")
    assert row["attempts"] == 3 and "HTTP 503" in row["last_error"]
    assert "gave up after 3 attempts" in row["last_error"]
    (dead,) = await dead_letters(notify_channel, prefix, "webhook", 1)
    headers = dead.headers or {}
    assert "HTTP 503" in str(headers["x-belfry-reason"]) and headers["x-belfry-attempts"] == 3
    assert dead.body and __import__("orjson").loads(dead.body)["data"]["notification_id"] == nid
    assert counter(service.metrics, "failed") == 1
    figures = {s.labels["owner"]: s.value for s in await service.metrics.failure_figures()}
    assert figures == {"tenant": 1, "belfry": 0}
    assert len(hook.requests) == 3


async def test_redirect_is_a_failure_and_not_followed(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    elsewhere: Receiver = await receiver()
    hook.answers = [(307, {"Location": f"{elsewhere.url}/steal"})]
    await add_channel("h", "webhook", {"url": hook.url})
    await start_notify()
    env = notification("h", "webhook")
    await publish(env)
    row = await delivery(db, env["data"]["notification_id"], "failed")
    assert "redirect" in row["last_error"] and row["attempts"] == 1
    assert elsewhere.requests == [] and len(hook.requests) == 1


async def test_redelivered_message_of_a_delivered_notification_is_not_sent_again(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    hook: Receiver = await receiver()
    await add_channel("h", "webhook", {"url": hook.url})
    service = await start_notify()
    env = notification("h", "webhook")
    nid = env["data"]["notification_id"]
    await publish(env)
    await delivery(db, nid, "delivered")
    await publish(env)  # the same notification again (a redelivery after a crash)

    async def handled() -> int:
        return service.consumers["webhook"].handled

    from tests.support.eventually import eventually

    await eventually(handled, lambda n: n >= 2, what="second message handled")
    assert len(hook.requests) == 1
    assert len(await attempts(db, nid)) == 1


async def test_invalid_messages_and_missing_channels(
    start_notify: StartNotify,
    publish: Publish,
    add_channel: AddChannel,
    db: asyncpg.Connection,
    notify_channel: aio_pika.abc.AbstractChannel,
    prefix: str,
) -> None:
    await add_channel("off", "webhook", {"url": "http://127.0.0.1:9/"}, enabled=False)
    await start_notify()
    await publish(b"not json at all")
    broken = notification("h", "webhook")
    del broken["data"]["alerts"]
    await publish(broken)
    dead = await dead_letters(notify_channel, prefix, "webhook", 2)
    reasons = sorted(str((d.headers or {})["x-belfry-reason"]) for d in dead)
    assert all(r.startswith("invalid notification: ") for r in reasons)
    assert any("data.alerts" in r for r in reasons)

    missing = notification("nope", "webhook")
    disabled = notification("off", "webhook")
    await publish(missing)
    await publish(disabled)
    row = await delivery(db, missing["data"]["notification_id"], "failed")
    assert row["last_error"] == "channel 'nope' does not exist" and row["attempts"] == 1
    row = await delivery(db, disabled["data"]["notification_id"], "failed")
    assert row["last_error"] == "channel 'off' is disabled"


async def test_a_hanging_receiver_times_out_and_is_retried(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    slow: Receiver = await receiver(hanging=True)
    await add_channel("slow", "webhook", {"url": slow.url})
    await start_notify(max_attempts=2, request_timeout=0.2)
    env = notification("slow", "webhook")
    nid = env["data"]["notification_id"]
    await publish(env)
    row = await delivery(db, nid, "failed")
    assert row["last_error"] == "timed out after 0.2s (gave up after 2 attempts)"
    assert [a["outcome"] for a in await attempts(db, nid)] == ["retried", "failed"]
    assert len(await slow.wait(2)) == 2  # both attempts reached the receiver
