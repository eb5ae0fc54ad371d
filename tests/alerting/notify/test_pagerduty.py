"""PagerDuty (Events API v2) against a local fake that checks the v2 schema: trigger,
acknowledge (an ack in Belfry) and resolve with the fingerprint as dedup key, severity
mapping, retries (429 Retry-After, 5xx) and final 4xx, the events URL from settings or the
channel, the egress guard, and a routing key the channel API never shows again."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.alerting.engine.state import ACKNOWLEDGED
from services.alerting.notify.config import redact_channel_config, validate_channel_config
from shared.contracts import ALERT_NOTIFICATION_V2
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    add_webhook,
    auth,
    engine_of,
    metric_event,
    webhook_alerts,
)
from tests.alerting.notify.conftest import (
    AddChannel,
    Publish,
    Receiver,
    StartNotify,
    attempts,
    delivery,
    notification,
)
from tests.support.eventually import eventually

ROUTING_KEY = "R0ut1ngKey0123456789abcdefABCDEF"  # 32 characters
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
TOP_LEVEL = {"routing_key", "event_action", "dedup_key", "payload", "images", "links"}
TOP_LEVEL |= {"client", "client_url"}


def schema_errors(event: Any) -> list[str]:
    """What PagerDuty's Events API v2 would refuse in `event` (its documented schema)."""
    if not isinstance(event, dict):
        return ["not an object"]
    errors = [f"unknown field {k}" for k in event if k not in TOP_LEVEL]
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("routing_key must be 32 characters")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("event_action")
    dedup = event.get("dedup_key")
    if (action != "trigger" and not dedup) or (dedup is not None and not 0 < len(dedup) <= 255):
        errors.append("dedup_key")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "payload required"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
            errors.append("payload.summary")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("payload.source")
        if payload.get("severity") not in SEVERITIES:
            errors.append("payload.severity")
        stamp = payload.get("timestamp")
        if stamp is not None:
            try:
                datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            except ValueError:
                errors.append("payload.timestamp")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            errors.append("payload.custom_details")
    for link in event.get("links") or []:
        if not isinstance(link, dict) or not str(link.get("href", "")).startswith("http"):
            errors.append("links")
    return errors


@dataclass
class FakePagerDuty:
    """A real HTTP server answering as PagerDuty's events endpoint: 202 for a valid
    event, 400 with the errors for an invalid one, or the queued `answers` first."""

    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    invalid: list[list[str]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(time.monotonic())
        if request.path != "/v2/enqueue" or request.content_type != "application/json":
            return web.json_response({"status": "not found"}, status=404)
        event = orjson.loads(await request.read())
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.json_response({"status": "throttled"}, status=status, headers=headers)
        errors = schema_errors(event)
        if errors:
            self.invalid.append(errors)
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                status=400,
            )
        self.events.append(event)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]},
            status=202,
        )


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    fake = FakePagerDuty()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/v2/enqueue"
    yield fake
    await runner.cleanup()


def test_schema_check_refuses_what_pagerduty_refuses() -> None:
    good = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "x", "severity": "info"},
    }
    assert schema_errors(good) == []
    assert schema_errors({**good, "routing_key": "short"})
    assert schema_errors({**good, "payload": {**good["payload"], "severity": "page"}})
    assert schema_errors({**good, "payload": {**good["payload"], "summary": "x" * 1025}})
    assert schema_errors({**good, "event_action": "resolve"})  # no dedup_key


def test_config_validation_and_redaction() -> None:
    assert validate_channel_config("pagerduty", {"routing_key": ROUTING_KEY}) == {}
    errors = validate_channel_config(
        "pagerduty",
        {
            "routing_key": "abc",
            "url": "ftp://x",
            "severities": {"critical": "page", "urgent": "info"},
            "source": "",
        },
    )
    assert set(errors) == {
        "routing_key",
        "url",
        "severities.critical",
        "severities.urgent",
        "source",
    }
    shown = redact_channel_config("pagerduty", {"routing_key": ROUTING_KEY, "url": "https://e"})
    assert shown["routing_key"] == "***" and ROUTING_KEY not in repr(shown)


def _two_alerts(status: str) -> list[dict[str, Any]]:
    base = notification("pd", "pagerduty", status=status)["data"]["alerts"][0]
    second = {
        **base,
        "fingerprint": "fp-fedcba9876543210",
        "labels": {"service": "writer", "severity": "warning", "instance": "w-1"},
        "annotations": {"summary": "x" * 2000, "runbook_url": "https://runbooks.example/w"},
        "severity": "warning",
    }
    return [base, second]


async def test_trigger_then_resolve_one_event_per_alert_in_the_v2_schema(
    pagerduty: FakePagerDuty,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    await add_channel(
        "pd",
        "pagerduty",
        {"routing_key": ROUTING_KEY, "url": pagerduty.url, "severities": {"warning": "error"}},
    )
    await start_notify(types=("pagerduty",))
    firing = notification("pd", "pagerduty", alerts=_two_alerts("firing"))
    await publish(firing)
    await delivery(db, firing["data"]["notification_id"], "delivered")
    resolved = notification("pd", "pagerduty", status="resolved", alerts=_two_alerts("resolved"))
    await publish(resolved)
    await delivery(db, resolved["data"]["notification_id"], "delivered")

    assert pagerduty.invalid == []
    actions = [(e["event_action"], e["dedup_key"]) for e in pagerduty.events]
    assert actions == [
        ("trigger", "fp-0123456789abcdef"),
        ("trigger", "fp-fedcba9876543210"),
        ("resolve", "fp-0123456789abcdef"),
        ("resolve", "fp-fedcba9876543210"),
    ]
    first, second = pagerduty.events[:2]
    assert first["routing_key"] == ROUTING_KEY
    assert first["payload"]["severity"] == "critical"  # critical stays critical
    assert second["payload"]["severity"] == "error"  # the channel maps warning to error
    assert first["payload"]["summary"] == "[FIRING] p95 latency 1.4s > 1s"
    assert len(second["payload"]["summary"]) == 1024
    assert first["payload"]["source"] == "ingest"  # the service label
    assert second["payload"]["source"] == "w-1"  # the instance label first
    assert first["payload"]["timestamp"] == "2026-01-02T03:04:05.000Z"
    assert first["payload"]["custom_details"]["labels"]["alertname"] == "HighLatency"
    assert first["links"][0]["href"].startswith("http://localhost:8082/")


async def test_429_retry_after_is_honoured_5xx_retried_and_4xx_final(
    pagerduty: FakePagerDuty,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    # The events URL from settings (ALERTING_PAGERDUTY_EVENTS_URL): no url on the channel.
    await add_channel("pd", "pagerduty", {"routing_key": ROUTING_KEY})
    await start_notify(types=("pagerduty",), pagerduty_events_url=pagerduty.url)
    pagerduty.answers = [(429, {"Retry-After": "1"}), (502, {})]
    env = notification("pd", "pagerduty")
    await publish(env)
    await delivery(db, env["data"]["notification_id"], "delivered")
    assert len(pagerduty.times) == 3 and len(pagerduty.events) == 1
    assert pagerduty.times[1] - pagerduty.times[0] >= 0.95  # Retry-After: 1
    outcomes = [a["outcome"] for a in await attempts(db, env["data"]["notification_id"])]
    assert outcomes == ["retried", "retried", "delivered"]

    pagerduty.answers = [(400, {})]
    bad = notification("pd", "pagerduty")
    await publish(bad)
    row = await delivery(db, bad["data"]["notification_id"], "failed")
    assert row["attempts"] == 1 and "HTTP 400" in row["last_error"]


async def test_egress_guard_refuses_an_internal_events_url(
    pagerduty: FakePagerDuty,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    await add_channel("pd", "pagerduty", {"routing_key": ROUTING_KEY, "url": pagerduty.url})
    await start_notify(types=("pagerduty",), egress_allow=())
    env = notification("pd", "pagerduty")
    await publish(env)
    row = await delivery(db, env["data"]["notification_id"], "refused")
    assert "loopback" in row["last_error"] and pagerduty.times == []


async def test_the_api_never_shows_the_routing_key(
    start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    h = auth(api_key)
    config = {"routing_key": ROUTING_KEY, "severities": {"info": "info"}}
    resp = await client.post(
        "/api/v1/channels", json={"name": "pd", "type": "pagerduty", "config": config}, headers=h
    )
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert made["config"]["routing_key"] == "***"
    for path in ("/api/v1/channels", "/api/v1/channels/pd"):
        assert ROUTING_KEY not in await (await client.get(path, headers=h)).text()
    # A PUT without config keeps the stored key; a bad key is a 400 naming the field.
    resp = await client.put("/api/v1/channels/pd", json={"enabled": False}, headers=h)
    assert resp.status == 200
    resp = await client.put(
        "/api/v1/channels/pd", json={"config": {"routing_key": "nope"}}, headers=h
    )
    assert resp.status == 400 and "config.routing_key" in (await resp.json())["fields"]


async def _settled(db: asyncpg.Connection, count: int) -> dict[tuple[str, str], str]:
    """(channel, alert status) → delivery status, once `count` deliveries are final."""

    async def rows() -> dict[tuple[str, str], str]:
        found = await db.fetch("SELECT channel, alert_status, status FROM notification_deliveries")
        return {(r["channel"], r["alert_status"]): r["status"] for r in found}

    return await eventually(
        rows, lambda d: len(d) == count and "pending" not in d.values(), what=f"{count} settled"
    )


async def _post(client: TestClient, path: str, headers: dict[str, str]) -> dict[str, Any]:
    resp = await client.post(path, json={"by": "alice"}, headers=headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_an_ack_in_belfry_acknowledges_the_incident_and_nothing_else(
    pagerduty: FakePagerDuty,
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
    webhook_receiver: Receiver,
) -> None:
    """Fire → `trigger`; ack through the API → `acknowledge`, same dedup key, as an
    alert.notification.v2; resolve → `resolve`. The webhook on the same rule has no
    acknowledge action: it is sent no notification for the ack."""
    await db.execute(
        "INSERT INTO alert_channels (tenant_id, name, type, config)"
        " VALUES ($1, 'pd', 'pagerduty', $2::jsonb)",
        TENANT,
        orjson.dumps({"routing_key": ROUTING_KEY, "url": pagerduty.url}).decode(),
    )
    await add_webhook(db, "hook", webhook_receiver)
    client = await start_alerting()
    h = auth(api_key)
    resp = await client.post(
        "/api/v1/rules",
        json={"name": "lat", "condition": "latency > 1", "channels": ["pd", "hook"]},
        headers=h,
    )
    assert resp.status == 201, await resp.text()
    await send_metrics(client, [metric_event("latency", 5, {"service": "api"}, at=clock())])
    await engine_of(client).tick()
    await _settled(db, 2)
    (alert,) = (await (await client.get("/api/v1/alerts", headers=h)).json())["alerts"]
    fp = alert["fingerprint"]

    clock.advance(30)
    assert (await _post(client, f"/api/v1/alerts/{fp}/ack", h))["state"] == ACKNOWLEDGED
    assert await _settled(db, 3) == {
        ("pd", "firing"): "delivered",
        ("hook", "firing"): "delivered",
        ("pd", "acknowledged"): "delivered",
    }
    envelope = await db.fetchval(
        "SELECT payload FROM notification_deliveries WHERE alert_status = 'acknowledged'"
    )
    assert orjson.loads(envelope)["type"] == ALERT_NOTIFICATION_V2

    clock.advance(30)
    await _post(client, f"/api/v1/alerts/{fp}/resolve", h)
    await _settled(db, 5)
    assert pagerduty.invalid == []
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [
        ("trigger", fp),
        ("acknowledge", fp),
        ("resolve", fp),
    ]
    assert pagerduty.events[1]["payload"]["summary"].startswith("[ACKNOWLEDGED] ")
    assert [status for status, _ in webhook_alerts(webhook_receiver)] == ["firing", "resolved"]


async def test_an_acknowledged_goes_only_where_it_can_acknowledge_a_delivered_firing(
    pagerduty: FakePagerDuty,
    receiver: Any,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    """Delivery's own checks, whoever published the v2: no acknowledge for an incident
    PagerDuty never got the trigger of, and none to a channel type without the action."""
    hook: Receiver = await receiver()
    await add_channel("pd", "pagerduty", {"routing_key": ROUTING_KEY, "url": pagerduty.url})
    await add_channel("hook", "webhook", {"url": hook.url})
    await start_notify(types=("pagerduty", "webhook"))

    def acknowledged(channel: str, kind: str) -> dict[str, Any]:
        env = notification(channel, kind, status="acknowledged")
        return {**env, "type": ALERT_NOTIFICATION_V2}

    early = acknowledged("pd", "pagerduty")
    await publish(early)
    row = await delivery(db, early["data"]["notification_id"], "skipped")
    assert "nothing to acknowledge" in row["last_error"]
    firing = notification("hook", "webhook")
    await publish(firing)
    await delivery(db, firing["data"]["notification_id"], "delivered")
    to_hook = acknowledged("hook", "webhook")
    await publish(to_hook)
    row = await delivery(db, to_hook["data"]["notification_id"], "skipped")
    assert row["last_error"] == "webhook channels have no acknowledge action"
    assert pagerduty.times == [] and [r.json()["status"] for r in hook.requests] == ["firing"]
