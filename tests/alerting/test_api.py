"""The management API: auth (401, cross-tenant 404), validation (400 with field errors),
rules/channels/silences CRUD, alerts with history, ack and resolve, stats, the SSE
stream, and the OpenAPI document covering every route."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import asyncpg
import orjson
import yaml
from aiohttp.test_utils import TestClient

from services.alerting.routes import OPENAPI
from services.alerting.settings import AlertingSettings
from shared.auth import create_key
from tests.alerting.conftest import (
    FakeClock,
    Send,
    StartAlerting,
    Tap,
    add_channel,
    auth,
    engine_of,
    metric_event,
)
from tests.conftest import start_postgres_proxy

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _json(resp: Any, status: int) -> Any:
    body = await resp.read()
    assert resp.status == status, body
    assert resp.content_type == "application/json", body
    return orjson.loads(body) if body else None


async def _fire(client: TestClient, send: Send, clock: FakeClock, value: float = 5) -> None:
    await send(client, [metric_event("latency", value, {"service": "api"}, at=clock())])
    await engine_of(client).tick()


async def test_auth_and_tenant_isolation(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    for path in (
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/silences",
        "/api/v1/channels",
        "/api/v1/stats",
        "/api/v1/alerts/stream",
    ):
        body = await _json(await client.get(path), 401)
        assert "error" in body
        await _json(await client.get(path, headers=auth("blf_nope")), 401)
    rule = await _json(
        await client.post(
            "/api/v1/rules", json={"name": "r", "condition": "latency > 1"}, headers=auth(api_key)
        ),
        201,
    )
    other = auth(await create_key(db, "globex"))
    await _json(await client.get(f"/api/v1/rules/{rule['id']}", headers=other), 404)
    await _json(await client.delete(f"/api/v1/rules/{rule['id']}", headers=other), 404)
    assert (await _json(await client.get("/api/v1/rules", headers=other), 200)) == {"rules": []}
    await _json(await client.get("/api/v1/rules/not-a-uuid", headers=other), 404)
    await _json(await client.get("/api/v1/nothing-here", headers=other), 404)


async def test_rules_crud_and_validation(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    h = auth(api_key)
    bad = await _json(
        await client.post(
            "/api/v1/rules",
            json={"name": "r", "condition": "latency >", "severity": "fatal"},
            headers=h,
        ),
        400,
    )
    assert set(bad["fields"]) == {"condition", "severity"}
    bad = await _json(
        await client.post(
            "/api/v1/rules",
            json={"name": "r", "condition": "x > 1", "channels": ["ghost"]},
            headers=h,
        ),
        400,
    )
    assert bad["fields"] == {"channels.0": "no channel named 'ghost'"}
    await _json(await client.post("/api/v1/rules", data=b"{nope", headers=h), 400)
    await _json(await client.post("/api/v1/rules", json=[1], headers=h), 400)

    await add_channel(db, "ops")
    rule = await _json(
        await client.post(
            "/api/v1/rules",
            json={
                "name": "High latency",
                "condition": 'p95(latency{service="api"}[5m]) > 0.5 for 5m',
                "channels": ["ops"],
            },
            headers=h,
        ),
        201,
    )
    assert rule["aggregation"] == "p95" and rule["window"] == 300 and rule["for"] == 300
    assert rule["matchers"] == [{"label": "service", "op": "=", "value": "api"}]
    assert rule["source"] == "api"
    await _json(
        await client.post(
            "/api/v1/rules", json={"name": "High latency", "condition": "x > 1"}, headers=h
        ),
        409,
    )
    got = await _json(await client.get(f"/api/v1/rules/{rule['id']}", headers=h), 200)
    assert got["condition"] == rule["condition"]
    put = await _json(
        await client.put(
            f"/api/v1/rules/{rule['id']}",
            json={"name": "High latency", "condition": "latency > 2", "severity": "critical"},
            headers=h,
        ),
        200,
    )
    assert (put["threshold"], put["severity"], put["id"]) == (2, "critical", rule["id"])
    listed = await _json(await client.get("/api/v1/rules", headers=h), 200)
    assert [r["name"] for r in listed["rules"]] == ["High latency"]
    assert (await client.delete(f"/api/v1/rules/{rule['id']}", headers=h)).status == 204
    await _json(await client.get(f"/api/v1/rules/{rule['id']}", headers=h), 404)


async def test_channels_crud_never_shows_secrets(
    start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    h = auth(api_key)
    bad = await _json(
        await client.post(
            "/api/v1/channels",
            json={"name": "x", "type": "webhook", "config": {"url": "ftp://x"}},
            headers=h,
        ),
        400,
    )
    assert "config.url" in bad["fields"]
    bad = await _json(
        await client.post(
            "/api/v1/channels", json={"name": "Bad Name", "type": "pager"}, headers=h
        ),
        400,
    )
    assert "name" in bad["fields"]
    config = {
        "url": "https://hooks.example.com/x?token=abc",
        "secrets": [SECRET],
        "headers": {"X-Key": "k"},
    }
    made = await _json(
        await client.post(
            "/api/v1/channels", json={"name": "ops", "type": "webhook", "config": config}, headers=h
        ),
        201,
    )
    assert SECRET not in orjson.dumps(made).decode() and "abc" not in orjson.dumps(made).decode()
    await _json(
        await client.post(
            "/api/v1/channels", json={"name": "ops", "type": "webhook", "config": config}, headers=h
        ),
        409,
    )
    put = await _json(
        await client.put(
            "/api/v1/channels/ops", json={"type": "webhook", "enabled": False}, headers=h
        ),
        200,
    )
    assert put["enabled"] is False
    got = await _json(await client.get("/api/v1/channels", headers=h), 200)
    assert [c["name"] for c in got["channels"]] == ["ops"]
    assert got["channels"][0]["config"]["secrets"] == made["config"]["secrets"]  # kept
    assert (await client.delete("/api/v1/channels/ops", headers=h)).status == 204
    await _json(await client.get("/api/v1/channels/ops", headers=h), 404)


async def test_alerts_history_ack_resolve_and_stats(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops")
    client = await start_alerting()
    h = auth(api_key)
    await _json(
        await client.post(
            "/api/v1/rules",
            json={
                "name": "lat",
                "condition": "latency > 1",
                "channels": ["ops"],
                "labels": {"team": "web"},
            },
            headers=h,
        ),
        201,
    )
    await _fire(client, send_metrics, clock)
    alerts = (
        await _json(
            await client.get("/api/v1/alerts?state=firing&label=service=api", headers=h), 200
        )
    )["alerts"]
    (alert,) = alerts
    assert alert["labels"] == {
        "alertname": "lat",
        "severity": "warning",
        "team": "web",
        "service": "api",
    }
    assert alert["value"] == 5 and alert["announced"] is True
    assert (await _json(await client.get("/api/v1/alerts?label=service=web", headers=h), 200))[
        "alerts"
    ] == []
    assert (await _json(await client.get("/api/v1/alerts?severity=critical", headers=h), 200))[
        "alerts"
    ] == []
    await _json(await client.get("/api/v1/alerts?state=burning", headers=h), 400)
    other = auth(await create_key(db, "globex"))
    fp = alert["fingerprint"]
    await _json(await client.get(f"/api/v1/alerts/{fp}", headers=other), 404)
    await _json(await client.post(f"/api/v1/alerts/{fp}/ack", headers=other), 404)

    clock.advance(60)
    acked = await _json(
        await client.post(f"/api/v1/alerts/{fp}/ack", json={"by": "alice"}, headers=h), 200
    )
    assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "alice")
    again = await _json(await client.post(f"/api/v1/alerts/{fp}/ack", headers=h), 200)
    assert again["acknowledged_by"] == "alice"
    clock.advance(60)
    resolved = await _json(
        await client.post(f"/api/v1/alerts/{fp}/resolve", json={"by": "bob"}, headers=h), 200
    )
    assert resolved["state"] == "resolved"
    await _json(await client.post(f"/api/v1/alerts/{fp}/resolve", headers=h), 200)
    await _json(await client.post(f"/api/v1/alerts/{fp}/ack", headers=h), 409)
    envelopes = await notify_tap.quiet(client, 2)
    assert [e["data"]["status"] for e in envelopes] == ["firing", "resolved"]

    one = await _json(await client.get(f"/api/v1/alerts/{fp}", headers=h), 200)
    assert [(t["from"], t["to"], t["actor"]) for t in one["history"]] == [
        ("inactive", "firing", None),
        ("firing", "acknowledged", "alice"),
        ("acknowledged", "resolved", "bob"),
    ]
    stats = await _json(await client.get("/api/v1/stats", headers=h), 200)
    assert stats["alerts"]["by_state"] == {"resolved": 1}
    assert stats["transitions"] == {"firing": 1, "acknowledged": 1, "resolved": 1}
    assert stats["mttr_seconds"] == 120
    assert stats["mtbf_seconds"] is None
    assert {(n["channel"], n["count"]) for n in stats["notifications"]} <= {("ops", 2)}
    await _json(
        await client.get(
            "/api/v1/stats?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z", headers=h
        ),
        400,
    )
    await _json(await client.get("/api/v1/stats?since=yesterday", headers=h), 400)


async def test_silence_suppresses_notifications(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops")
    client = await start_alerting()
    h = auth(api_key)
    await _json(
        await client.post(
            "/api/v1/rules",
            json={"name": "lat", "condition": "latency > 1", "channels": ["ops"]},
            headers=h,
        ),
        201,
    )
    bad = await _json(
        await client.post("/api/v1/silences", json={"matchers": [], "duration": "soon"}, headers=h),
        400,
    )
    assert set(bad["fields"]) == {"matchers", "duration", "author"}
    silence = await _json(
        await client.post(
            "/api/v1/silences",
            json={
                "matchers": {"alertname": "lat"},
                "duration": "1h",
                "author": "alice",
                "comment": "deploy",
            },
            headers=h,
        ),
        201,
    )
    assert silence["state"] == "active"
    await _fire(client, send_metrics, clock)
    (alert,) = (await _json(await client.get("/api/v1/alerts", headers=h), 200))["alerts"]
    assert (alert["state"], alert["silence_id"]) == ("silenced", silence["id"])
    await notify_tap.quiet(client, 0)
    other = auth(await create_key(db, "globex"))
    await _json(await client.get(f"/api/v1/silences/{silence['id']}", headers=other), 404)
    assert (await client.delete(f"/api/v1/silences/{silence['id']}", headers=h)).status == 204
    clock.advance(10)
    await _fire(client, send_metrics, clock)
    (alert,) = (await _json(await client.get("/api/v1/alerts", headers=h), 200))["alerts"]
    assert alert["state"] == "firing"
    await notify_tap.quiet(client, 1)


async def test_sse_stream_receives_a_transition(
    start_alerting: StartAlerting, api_key: str, send_metrics: Send, clock: FakeClock
) -> None:
    client = await start_alerting()
    h = auth(api_key)
    await _json(
        await client.post(
            "/api/v1/rules", json={"name": "lat", "condition": "latency > 1"}, headers=h
        ),
        201,
    )
    resp = await client.get("/api/v1/alerts/stream", headers=h)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    assert await resp.content.readline() == b": connected\n"
    await _fire(client, send_metrics, clock)
    fields: dict[str, bytes] = {}
    while "data" not in fields:
        line = await asyncio.wait_for(resp.content.readline(), 5)
        name, _, value = line.rstrip(b"\n").partition(b": ")
        if name and not line.startswith(b":"):
            fields[name.decode()] = value
    assert (fields["id"], fields["event"]) == (b"1", b"transition")
    event = orjson.loads(fields["data"])
    assert (event["from"], event["to"], event["labels"]) == (
        "inactive",
        "firing",
        {"service": "api"},
    )
    resp.close()


async def test_openapi_documents_every_route(start_alerting: StartAlerting) -> None:
    client = await start_alerting()
    resp = await client.get("/api/v1/openapi.yaml")
    assert resp.status == 200
    spec = yaml.safe_load(await resp.read())
    assert spec == yaml.safe_load(OPENAPI.read_text())
    assert client.app is not None
    routes = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "HEAD":
            routes.add((path, route.method.lower()))
    missing = {(p, m) for p, m in routes if m not in spec["paths"].get(p, {})}
    assert missing == set(), f"routes not in openapi.yaml: {sorted(missing)}"
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops if m != "parameters"}
    stale = documented - routes
    assert stale == set(), f"documented but not served: {sorted(stale)}"


async def test_metrics_names(
    start_alerting: StartAlerting, send_metrics: Send, clock: FakeClock, db: asyncpg.Connection
) -> None:
    client = await start_alerting()
    text = await (await client.get("/metrics")).text()
    for name in (
        "belfry_alerting_evaluations_total",
        "belfry_alerting_alerts{",
        "belfry_alerting_transitions_total",
    ):
        assert name in text, name


async def test_deleting_a_rule_still_resolves_its_announced_alert(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops")
    client = await start_alerting()
    h = auth(api_key)
    rule = await _json(
        await client.post(
            "/api/v1/rules",
            json={"name": "lat", "condition": "latency > 1", "channels": ["ops"]},
            headers=h,
        ),
        201,
    )
    await _fire(client, send_metrics, clock)
    await notify_tap.wait(1)
    clock.advance(5)
    assert (await client.delete(f"/api/v1/rules/{rule['id']}", headers=h)).status == 204
    envelopes = await notify_tap.quiet(client, 2)
    assert [e["data"]["status"] for e in envelopes] == ["firing", "resolved"]
    assert await db.fetchval("SELECT count(*) FROM alerts") == 0
    assert engine_of(client).alerts == {}


async def test_metrics_pass_promtool(start_alerting: StartAlerting) -> None:
    from tests.integration.test_prometheus_text import check_metrics

    client = await start_alerting()
    text = await (await client.get("/metrics")).text()
    code, out = await check_metrics(text)
    assert code == 0, out


async def test_database_away_is_a_503_with_a_reason(
    start_alerting: StartAlerting,
    alerting_settings: AlertingSettings,
    api_key: str,
    database_url: str,
) -> None:
    proxy = await start_postgres_proxy()
    try:
        common = replace(alerting_settings.common, database_url=proxy.url_for(database_url))
        client = await start_alerting(common=common)
        proxy.cut()
        resp = await client.get("/api/v1/rules", headers=auth(api_key))
        assert resp.status == 503
        assert (await resp.json())["error"] == "database unavailable; retry later"
    finally:
        await proxy.close()


async def test_alerts_show_their_rendered_annotations(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
) -> None:
    """The annotations of the alert's latest change, as its notification carried them,
    in the list and the single-alert route (and after a restart, from Postgres)."""
    client = await start_alerting()
    h = auth(api_key)
    rule = {
        "name": "lat",
        "condition": "latency > 1",
        "annotations": {"summary": "{{ labels.service }} at {{ value }}s > {{ threshold }}"},
    }
    await _json(await client.post("/api/v1/rules", json=rule, headers=h), 201)
    await _fire(client, send_metrics, clock, 2.5)
    expected = {"summary": "api at 2.5s > 1"}
    (alert,) = (await _json(await client.get("/api/v1/alerts", headers=h), 200))["alerts"]
    assert alert["annotations"] == expected
    one = await _json(await client.get(f"/api/v1/alerts/{alert['fingerprint']}", headers=h), 200)
    assert one["annotations"] == expected
    acked = await _json(
        await client.post(f"/api/v1/alerts/{alert['fingerprint']}/ack", headers=h), 200
    )
    assert acked["annotations"] == expected
    await client.close()
    again = await start_alerting()
    (alert,) = (await _json(await again.get("/api/v1/alerts", headers=h), 200))["alerts"]
    assert alert["annotations"] == expected
