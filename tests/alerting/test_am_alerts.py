"""Alerts received through Alertmanager's v2 API (`POST /api/v2/alerts`), on the real
broker and database with the fake clock: one alert per label set, expiry at `endsAt` or
after the resolve timeout, silences, ack, tenant isolation, MTTR, and 400/401 for what
is not an alert list from a known key."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import TestClient

from services.alerting.external import AlertsError, parse_alerts
from shared.auth import create_key
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    StartAlerting,
    Tap,
    add_channel,
    auth,
    engine_of,
)


def am_alert(
    name: str = "HighLatency",
    *,
    ends: datetime | None = None,
    starts: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": name, "severity": "critical", **labels},
        "annotations": {"summary": f"{name} on {labels.get('instance', '?')}"},
        "generatorURL": "http://prometheus.test/graph?g0.expr=up",
    }
    if ends is not None:
        alert["endsAt"] = ends.isoformat().replace("+00:00", "Z")
    if starts is not None:
        alert["startsAt"] = starts.isoformat().replace("+00:00", "Z")
    return alert


async def post(client: TestClient, key: str, alerts: Any, status: int = 200) -> Any:
    resp = await client.post("/api/v2/alerts", data=orjson.dumps(alerts), headers=auth(key))
    body = await resp.read()
    assert resp.status == status, body
    return orjson.loads(body) if body else None


async def alerts_of(client: TestClient, key: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/alerts", headers=auth(key))
    assert resp.status == 200
    return list((await resp.json())["alerts"])


async def test_same_labels_are_one_alert_that_fires_once_and_expires_at_ends_at(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops")
    client = await start_alerting()
    ends = clock() + timedelta(minutes=4)
    started = clock() - timedelta(minutes=2)
    twice = [am_alert(instance="a", ends=ends, starts=started)] * 2
    assert await post(client, api_key, twice) is None  # 200, empty body: Alertmanager's answer
    clock.advance(60)  # Prometheus re-sends with endsAt moved on
    await post(client, api_key, [am_alert(instance="a", ends=ends + timedelta(minutes=1))])

    (alert,) = await alerts_of(client, api_key)
    assert alert["state"] == "firing" and alert["rule"] == "HighLatency"
    assert alert["labels"] == {"alertname": "HighLatency", "severity": "critical", "instance": "a"}
    assert alert["severity"] == "critical" and alert["value"] is None
    assert alert["annotations"] == {"summary": "HighLatency on a"}
    assert alert["fired_at"] == started.isoformat()  # startsAt: the episode's start
    (firing,) = await notify_tap.wait(1)
    assert firing["data"]["status"] == "firing" and firing["data"]["channel"] == "ops"
    (sent,) = firing["data"]["alerts"]
    assert sent["labels"]["instance"] == "a" and sent["severity"] == "critical"
    assert sent["annotations"] == {"summary": "HighLatency on a"}

    clock.advance(4 * 60 - 1)  # 1 s before the moved expiry: still firing
    await engine_of(client).tick()
    assert [a["state"] for a in await alerts_of(client, api_key)] == ["firing"]
    clock.advance(2)
    await engine_of(client).tick()
    (alert,) = await alerts_of(client, api_key)
    assert alert["state"] == "resolved"
    envelopes = await notify_tap.wait(2)
    assert [e["data"]["status"] for e in envelopes] == ["firing", "resolved"]
    await notify_tap.quiet(client, 2)

    stats = await (await client.get("/api/v1/stats", headers=auth(api_key))).json()
    # MTTR from startsAt (2 min before the first receive) to the tick that saw the
    # expiry (5 min after the first receive) pass, 1 s after it.
    assert stats["mttr_seconds"] == 7 * 60 + 1
    assert stats["transitions"] == {"firing": 1, "resolved": 1}


async def test_ends_at_in_the_past_resolves_and_no_ends_at_uses_resolve_timeout(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops")
    client = await start_alerting(resolve_timeout=120)
    await post(client, api_key, [am_alert(instance="a"), am_alert(instance="b")])
    assert {a["state"] for a in await alerts_of(client, api_key)} == {"firing"}
    # a: the sender says it ended (endsAt in the past) -> resolved at once.
    clock.advance(30)
    await post(client, api_key, [am_alert(instance="a", ends=clock() - timedelta(seconds=1))])
    states = {a["labels"]["instance"]: a["state"] for a in await alerts_of(client, api_key)}
    assert states == {"a": "resolved", "b": "firing"}
    # b: never re-sent -> resolved once the resolve timeout (120 s) after its receipt passed.
    clock.advance(89)
    await engine_of(client).tick()
    states = {a["labels"]["instance"]: a["state"] for a in await alerts_of(client, api_key)}
    assert states["b"] == "firing"
    clock.advance(2)
    await engine_of(client).tick()
    states = {a["labels"]["instance"]: a["state"] for a in await alerts_of(client, api_key)}
    assert states == {"a": "resolved", "b": "resolved"}
    # An alert that ended before Belfry ever saw it is not kept.
    await post(client, api_key, [am_alert("Gone", ends=clock() - timedelta(seconds=5))])
    assert len(await alerts_of(client, api_key)) == 2
    envelopes = await notify_tap.wait(3)
    statuses = sorted(
        (e["data"]["status"], len(e["data"]["alerts"])) for e in envelopes
    )  # the two firings went out as one group
    assert statuses == [("firing", 2), ("resolved", 1), ("resolved", 1)]


async def test_silence_ack_and_the_rule_of_an_alertname(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops")
    await add_channel(db, "pager")
    client = await start_alerting()
    h = auth(api_key)
    resp = await client.post(
        "/api/v1/silences",
        json={"matchers": {"team": "db"}, "duration": "10m", "author": "alice"},
        headers=h,
    )
    assert resp.status == 201
    ends = clock() + timedelta(hours=1)
    await post(client, api_key, [am_alert("DiskFull", team="db", ends=ends)])
    await post(client, api_key, [am_alert("DiskFull", team="web", ends=ends)])
    states = {a["labels"]["team"]: a for a in await alerts_of(client, api_key)}
    assert states["db"]["state"] == "silenced" and states["web"]["state"] == "firing"
    # The external rule: one per alertname, listed with the tenant's rules; its channels
    # (none named) are every enabled channel of the tenant.
    rules = (await (await client.get("/api/v1/rules", headers=h)).json())["rules"]
    (rule,) = [r for r in rules if r["name"] == "DiskFull"]
    assert rule["source"] == "external"
    envelopes = await notify_tap.wait(2)
    assert sorted(e["data"]["channel"] for e in envelopes) == ["ops", "pager"]
    assert {e["data"]["alerts"][0]["labels"]["team"] for e in envelopes} == {"web"}
    # Ack stops nothing but repeats; the alert keeps its own text.
    fp = states["web"]["fingerprint"]
    acked = await (await client.post(f"/api/v1/alerts/{fp}/ack", headers=h)).json()
    assert acked["state"] == "acknowledged"
    assert acked["annotations"] == {"summary": "DiskFull on ?"}
    # The silence ends: the silenced alert is announced then.
    clock.advance(11 * 60)
    await engine_of(client).tick()
    states = {a["labels"]["team"]: a["state"] for a in await alerts_of(client, api_key)}
    assert states == {"db": "firing", "web": "acknowledged"}
    envelopes = await notify_tap.wait(4)
    assert {e["data"]["alerts"][0]["labels"]["team"] for e in envelopes[2:]} == {"db"}
    # Restricting the rule's channels through the rules API is kept by later alerts.
    doc = {k: rule[k] for k in ("name", "metric", "op", "threshold")} | {"channels": ["pager"]}
    resp = await client.put(f"/api/v1/rules/{rule['id']}", json=doc, headers=h)
    assert resp.status == 200, await resp.text()
    await post(client, api_key, [am_alert("DiskFull", team="ops", ends=ends)])
    envelopes = await notify_tap.wait(5)
    assert envelopes[4]["data"]["channel"] == "pager"
    await notify_tap.quiet(client, 5)


async def test_disabling_the_rule_resolves_and_drops_and_a_reload_keeps_the_expiry(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops")
    client = await start_alerting()
    h = auth(api_key)
    ends = clock() + timedelta(minutes=2)
    await post(client, api_key, [am_alert("A", ends=ends), am_alert("B", ends=ends)])
    await notify_tap.wait(2)
    # The engine's memory reloaded from Postgres (as after a restart): B's expiry holds.
    await engine_of(client).load()
    rules = (await (await client.get("/api/v1/rules", headers=h)).json())["rules"]
    (rule_a,) = [r for r in rules if r["name"] == "A"]
    doc = {k: rule_a[k] for k in ("name", "metric", "op", "threshold")} | {"enabled": False}
    resp = await client.put(f"/api/v1/rules/{rule_a['id']}", json=doc, headers=h)
    assert resp.status == 200, await resp.text()
    states = {a["rule"]: a["state"] for a in await alerts_of(client, api_key)}
    assert states == {"A": "resolved", "B": "firing"}
    envelopes = await notify_tap.wait(3)
    assert (envelopes[2]["data"]["status"], envelopes[2]["data"]["channel"]) == ("resolved", "ops")
    await post(client, api_key, [am_alert("A", ends=ends + timedelta(minutes=5))])  # dropped
    clock.advance(121)
    await engine_of(client).tick()
    states = {a["rule"]: a["state"] for a in await alerts_of(client, api_key)}
    assert states == {"A": "resolved", "B": "resolved"}
    await notify_tap.quiet(client, 4)


async def test_an_instance_that_does_not_evaluate_answers_503(
    start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    engine = engine_of(client)
    engine.loaded = False  # as on a standby, or before the engine could load
    try:
        resp = await client.post("/api/v2/alerts", data=b"[]", headers=auth(api_key))
        assert resp.status == 503 and "error" in await resp.json()
    finally:
        engine.loaded = True


async def test_a_rule_named_like_the_alertname_is_left_alone(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    h = auth(api_key)
    resp = await client.post(
        "/api/v1/rules", json={"name": "HighLatency", "condition": "latency > 1"}, headers=h
    )
    assert resp.status == 201
    await post(client, api_key, [am_alert(instance="a")])
    rules = (await (await client.get("/api/v1/rules", headers=h)).json())["rules"]
    assert sorted((r["name"], r["source"]) for r in rules) == [
        ("HighLatency", "api"),
        ("HighLatency (external)", "external"),
    ]
    (alert,) = await alerts_of(client, api_key)
    assert alert["labels"]["alertname"] == "HighLatency"


async def test_tenants_see_only_their_own_and_auth_is_required(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str
) -> None:
    other = await create_key(db, "globex")
    client = await start_alerting()
    await post(client, api_key, [am_alert(instance="a")])
    await post(client, other, [am_alert(instance="a")])  # same labels, other tenant
    mine, theirs = await alerts_of(client, api_key), await alerts_of(client, other)
    assert len(mine) == len(theirs) == 1 and mine[0]["fingerprint"] != theirs[0]["fingerprint"]
    rows = await db.fetch("SELECT tenant_id FROM alerts ORDER BY tenant_id")
    assert [r["tenant_id"] for r in rows] == ["acme", "globex"]
    # Grafana's contact point has only basic auth: the key is the password.
    basic = base64.b64encode(f"grafana:{api_key}".encode()).decode()
    resp = await client.post(
        "/api/v2/alerts",
        data=orjson.dumps([am_alert(instance="b")]),
        headers={"Authorization": f"Basic {basic}"},
    )
    assert resp.status == 200
    assert len(await alerts_of(client, api_key)) == 2
    for headers in ({}, auth("blf_000000000000_" + "x" * 40), {"Authorization": "Basic !!"}):
        resp = await client.post("/api/v2/alerts", data=b"[]", headers=headers)
        assert resp.status == 401 and "error" in await resp.json()


async def test_bad_input_is_a_400_with_a_reason(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()
    bad: list[tuple[bytes, str]] = [
        (b"not json", "body"),
        (b'{"labels": {}}', "body"),
        (orjson.dumps([1]), "0"),
        (orjson.dumps([{"labels": {}}]), "0.labels"),
        (orjson.dumps([{"labels": {"severity": "x"}}]), "0.labels.alertname"),
        (orjson.dumps([{"labels": {"alertname": " "}}]), "0.labels.alertname"),
        (orjson.dumps([{"labels": {"alertname": "a" * 201}}]), "0.labels.alertname"),
        (orjson.dumps([{"labels": {"alertname": "a", "bad-name": "x"}}]), "0.labels.bad-name"),
        (orjson.dumps([{"labels": {"alertname": "a", "x": 1}}]), "0.labels.x"),
        (orjson.dumps([{"labels": {"alertname": "a", "x": "y" * 5000}}]), "0.labels.x"),
        (orjson.dumps([{"labels": {f"l{i}": "v" for i in range(65)}}]), "0.labels"),
        (orjson.dumps([{"labels": {"alertname": "a"}, "annotations": []}]), "0.annotations"),
        (orjson.dumps([{"labels": {"alertname": "a"}, "endsAt": "soon"}]), "0.endsAt"),
        (orjson.dumps([{"labels": {"alertname": "a"}, "startsAt": "9999-01-01T00:00:00Z"}]), ""),
        (orjson.dumps([{"labels": {"alertname": "a"}, "endsAt": "2026-01-01T00:00:00"}]), ""),
        (orjson.dumps([{"labels": {"alertname": "a"}, "generatorURL": 5}]), "0.generatorURL"),
        (orjson.dumps([{"labels": {"alertname": "a\u0000"}}]), "0.labels.alertname"),
        (
            orjson.dumps([{"labels": {"alertname": "a"}, "annotations": {"\u0000": ""}}]),
            "0.annotations.\u0000",
        ),
        (
            orjson.dumps([{"labels": {"alertname": "a"}, "generatorURL": "\u0000"}]),
            "0.generatorURL",
        ),
        (orjson.dumps([{"labels": {"alertname": "a"}, "endsAt": "2026\u0000"}]), "0.endsAt"),
        (b"", "body"),
        (orjson.dumps([{"labels": {"alertname": "a"}}] * 1001), "body"),
    ]
    for body, field in bad:
        resp = await client.post("/api/v2/alerts", data=body, headers=auth(api_key))
        reply = await resp.read()
        assert resp.status == 400, (body[:80], reply)
        error = orjson.loads(reply)
        assert "error" in error
        if field not in ("", "body") or (field == "body" and "fields" in error):
            assert field in error.get("fields", {}), (body[:80], error)
    # A NUL where Belfry keeps nothing (a field Alertmanager does not know) is ignored.
    unknown = [{"labels": {"alertname": "a"}, "extra\u0000": {"x": "\u0000"}}]
    await post(client, api_key, unknown)
    huge = b"[" + b",".join([orjson.dumps(am_alert(instance="x" * 4000))] * 400) + b"]"
    resp = await client.post("/api/v2/alerts", data=huge, headers=auth(api_key))
    assert resp.status == 413
    assert [a["labels"]["alertname"] for a in await alerts_of(client, api_key)] == ["a"]


def test_parse_reads_go_times_and_treats_the_zero_time_as_unset() -> None:
    (alert,) = parse_alerts(
        [
            {
                "labels": {"alertname": "A"},
                "startsAt": "2026-01-02T03:04:05.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
            }
        ]
    )
    assert alert.starts_at is not None and alert.starts_at.microsecond == 123456
    assert alert.ends_at is None and alert.annotations == {} and alert.generator_url == ""
    try:
        parse_alerts([{"labels": {"alertname": "A"}, "startsAt": "1969-12-31T23:59:59Z"}])
    except AlertsError as exc:
        assert set(exc.fields) == {"0.startsAt"}
    else:
        raise AssertionError("a time before 1970 was taken")
    assert TENANT == "acme"
