"""The console's alerts view without a browser: the api's same-origin proxy to a real
alerting service (real broker and database, fake clock), and the alerting routes the view
reads (one alert's timeline, activity).

- the page is served with the strict CSP; the proxy passes a tenant's calls and its SSE
  stream through, refuses calls the view does not make, another tenant's key, and big
  bodies, and answers 503 JSON when the alerting service is down (never a 500);
- an alert's timeline lists its transitions and its notifications with every attempt
  (a failed delivery with its error), and the activity names each channel's last one.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.alerting.keys import RELAY
from services.api.console.alerts import ALLOWED, MAX_RESPONSE
from services.api.console.targets import ConsoleTargets
from services.api.settings import ApiSettings
from tests.alerting.conftest import (  # noqa: F401  (fixtures)
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    alerting_settings,
    clock,
    engine_of,
    metric_event,
    send_metrics,
    start_alerting,
    webhook_receiver,
)
from tests.alerting.notify.conftest import Receiver
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started
from tests.support.eventually import eventually

RULE = {
    "name": "HighLatency",
    "condition": "latency > 1",
    "severity": "critical",
    "channels": ["hook"],
    "labels": {"team": "mail"},
    "annotations": {
        "summary": "latency is {{ value }}",
        "runbook_url": "https://runbooks.example/latency",
    },
}


async def start_console(
    start_api: Started, api_settings: ApiSettings, alerting: TestClient
) -> TestClient:
    url = str(alerting.make_url("")).rstrip("/")
    return await start_api(replace(api_settings, console=ConsoleTargets(alerting_url=url)))


async def fire(
    alerting: TestClient,
    send: Send,
    at: FakeClock,
    key: str,
    rule: dict[str, Any],
    **labels: str,
) -> str:
    """Create `rule` (if new), send a breaching sample of its metric, tick: the alert's
    fingerprint."""
    resp = await alerting.post("/api/v1/rules", json=rule, headers=bearer(key))
    assert resp.status in (201, 409), await resp.text()
    event = metric_event(rule["condition"].split()[0], 2.0, labels, at=at.now)
    await send(alerting, [event])
    await engine_of(alerting).tick()
    resp = await alerting.get(
        "/api/v1/alerts", params={"label": f"alertname={rule['name']}"}, headers=bearer(key)
    )
    (alert,) = [a for a in (await resp.json())["alerts"] if a["series_labels"] == labels]
    assert alert["state"] == "firing"
    return str(alert["fingerprint"])


async def add_hook(alerting: TestClient, key: str, receiver: Receiver, name: str = "hook") -> None:
    body = {"name": name, "type": "webhook", "config": {"url": f"{receiver.url}/{name}"}}
    resp = await alerting.post("/api/v1/channels", json=body, headers=bearer(key))
    assert resp.status == 201, await resp.text()


async def test_proxy_passes_calls_and_the_stream_and_refuses_the_rest(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
    send_metrics: Send,  # noqa: F811 (the imported fixture)
    clock: FakeClock,  # noqa: F811 (the imported fixture)
    webhook_receiver: Receiver,  # noqa: F811 (the imported fixture)
) -> None:
    key = await new_tenant(db, TENANT)
    other = await new_tenant(db, "globex")
    alerting = await start_alerting()
    api = await start_console(start_api, api_settings, alerting)
    await add_hook(alerting, key, webhook_receiver)

    page = await api.get(f"/{TENANT}/console/alerts")
    assert page.status == 200
    csp = page.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in csp and "unsafe-inline" not in csp
    assert 'href="/console/health"' in await page.text()

    # The stream, through the proxy: a transition committed after connecting arrives.
    stream = await api.get(f"/{TENANT}/console/api/alerts/stream", headers=bearer(key))
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    assert (await stream.content.readuntil(b"\n\n")) == b": connected\n\n"
    fp = await fire(alerting, send_metrics, clock, key, RULE, service="ingest")
    event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)
    assert b"event: transition" in event and fp.encode() in event
    stream.close()

    listed = await api.get(f"/{TENANT}/console/api/alerts?state=firing", headers=bearer(key))
    assert listed.status == 200
    (alert,) = (await listed.json())["alerts"]
    assert alert["annotations"]["runbook_url"] == "https://runbooks.example/latency"
    ack = await api.post(
        f"/{TENANT}/console/api/alerts/{fp}/ack", json={"by": "tester"}, headers=bearer(key)
    )
    assert ack.status == 200 and (await ack.json())["state"] == "acknowledged"

    # Not a call the view makes; no key; another tenant's key; a body too big.
    for method, path in (
        ("PUT", "rules/x"),
        ("GET", "../../metrics"),
        ("POST", "rules"),
    ):
        resp = await api.request(method, f"/{TENANT}/console/api/{path}", headers=bearer(key))
        assert resp.status in (404, 405), (method, path, resp.status)
    # A dot segment never reaches the alerting service, whatever a client normalises.
    assert not any(ALLOWED["GET"].fullmatch(p) for p in ("alerts/../timeline", "alerts/./x"))
    assert (await api.get(f"/{TENANT}/console/api/alerts")).status == 401
    resp = await api.get(f"/{TENANT}/console/api/alerts", headers=bearer(other))
    assert resp.status == 404 and (await resp.json())["error"] == "unknown tenant"
    resp = await api.post(
        f"/{TENANT}/console/api/silences", data=b"x" * 70_000, headers=bearer(key)
    )
    assert resp.status == 413 and "error" in await resp.json()

    # The alerting API's own answers pass through (a 400 with its reasons).
    resp = await api.post(f"/{TENANT}/console/api/silences", json={}, headers=bearer(key))
    assert resp.status == 400 and "matchers" in (await resp.json())["fields"]


async def test_alerting_down_is_a_503_json(
    db: asyncpg.Connection, start_api: Started, api_settings: ApiSettings
) -> None:
    key = await new_tenant(db, TENANT)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    targets = ConsoleTargets(alerting_url=f"http://127.0.0.1:{port}", timeout_seconds=1)
    api = await start_api(replace(api_settings, console=targets))
    for path in ("alerts", "alerts/stream", "stats"):
        resp = await api.get(f"/{TENANT}/console/api/{path}", headers=bearer(key))
        assert resp.status == 503, path
        assert "alerting service is unavailable" in (await resp.json())["error"]
        assert resp.headers["Retry-After"] == "5"


async def test_timeline_has_transitions_and_notifications_with_attempts(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
    send_metrics: Send,  # noqa: F811 (the imported fixture)
    clock: FakeClock,  # noqa: F811 (the imported fixture)
    webhook_receiver: Receiver,  # noqa: F811 (the imported fixture)
) -> None:
    key = await new_tenant(db, TENANT)
    alerting = await start_alerting()
    api = await start_console(start_api, api_settings, alerting)
    await add_hook(alerting, key, webhook_receiver)
    webhook_receiver.answers.append((500, {}))  # the one attempt (max_attempts=1) fails
    fp = await fire(alerting, send_metrics, clock, key, RULE, service="ingest")
    await webhook_receiver.wait(1)

    async def timeline() -> Any:
        resp = await api.get(f"/{TENANT}/console/api/alerts/{fp}/timeline", headers=bearer(key))
        assert resp.status == 200
        return (await resp.json())["events"]

    events = await eventually(
        timeline,
        lambda ev: any(e["kind"] == "notification" and e["status"] == "failed" for e in ev),
        what="the failed notification in the timeline",
    )
    transitions = [(e["from"], e["to"]) for e in events if e["kind"] == "transition"]
    assert transitions[-1] == ("inactive", "firing") or transitions[-1][1] == "firing"
    (note,) = [e for e in events if e["kind"] == "notification"]
    assert note["channel"] == "hook" and note["alert_status"] == "firing"
    (attempt,) = note["tries"]
    assert attempt["outcome"] == "failed" and attempt["status_code"] == 500
    assert events.index(note) > max(i for i, e in enumerate(events) if e["kind"] == "transition")

    resp = await api.get(f"/{TENANT}/console/api/activity", headers=bearer(key))
    activity = await resp.json()
    (channel,) = activity["channels"]
    assert channel["last_notification"]["status"] == "failed"
    assert channel["counts"] == {"failed": 1}
    (rule,) = activity["rules"]
    assert rule["name"] == "HighLatency" and rule["alerts"] == {"firing": 1}
    assert activity["fired_by_severity"] == {"critical": 1}
    assert activity["evaluation"]["ticks"] >= 1

    # Unknown alert, other tenant: 404 from the alerting service, passed on.
    resp = await api.get(
        f"/{TENANT}/console/api/alerts/0123456789abcdef/timeline", headers=bearer(key)
    )
    assert resp.status == 404


async def test_a_silence_stops_a_repeat_due_at_the_same_evaluation(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
    send_metrics: Send,  # noqa: F811 (the imported fixture)
    clock: FakeClock,  # noqa: F811 (the imported fixture)
    webhook_receiver: Receiver,  # noqa: F811 (the imported fixture)
) -> None:
    key = await new_tenant(db, TENANT)
    alerting = await start_alerting()
    api = await start_console(start_api, api_settings, alerting)
    await add_hook(alerting, key, webhook_receiver)
    rule = {**RULE, "repeat_interval": "1m"}
    await fire(alerting, send_metrics, clock, key, rule, service="ingest")
    await webhook_receiver.wait(1)
    silence = {"matchers": {"service": "ingest"}, "duration": "1h", "author": "tester"}
    resp = await api.post(f"/{TENANT}/console/api/silences", json=silence, headers=bearer(key))
    assert resp.status == 201, await resp.text()

    clock.advance(90)  # a repeat is due now, and the silence applies now
    await send_metrics(
        alerting, [metric_event("latency", 2.0, {"service": "ingest"}, at=clock.now)]
    )
    await engine_of(alerting).tick()
    assert alerting.app is not None
    await eventually(alerting.app[RELAY].pending, lambda n: n == 0, what="outbox empty")
    await asyncio.sleep(0.3)  # a notification, if any, would be delivered by now
    assert len(webhook_receiver.requests) == 1, "the repeat went out despite the silence"


async def test_proxy_bounds_what_comes_back(
    db: asyncpg.Connection, start_api: Started, api_settings: ApiSettings
) -> None:
    """An upstream answering 500, an oversized body or too slowly: 502 / 503 JSON, not a
    500 and not the body. (A stand-in upstream: the real service never answers so.)"""
    key = await new_tenant(db, TENANT)

    async def crash(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Traceback (most recent call last): ...")

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + b"0," * (MAX_RESPONSE // 2) + b"0]")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    async def large(request: web.Request) -> web.StreamResponse:
        # Within the bound but many network reads, streamed without a length.
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"silences": [')
        for i in range(20):
            await resp.write(b",".join(b'{"id": %d}' % (i * 5000 + n) for n in range(5000)))
            await resp.write(b"," if i < 19 else b"]}")
        await resp.write_eof()
        return resp

    stand_in = web.Application()
    stand_in.router.add_get("/api/v1/silences", large)
    stand_in.router.add_get("/api/v1/alerts", crash)
    stand_in.router.add_get("/api/v1/rules", huge)
    stand_in.router.add_get("/api/v1/stats", slow)
    server = TestServer(stand_in, host="127.0.0.1")
    await server.start_server()
    try:
        targets = ConsoleTargets(
            alerting_url=str(server.make_url("")).rstrip("/"), timeout_seconds=1
        )
        api = await start_api(replace(api_settings, console=targets))
        for path, status, reason in (
            ("alerts", 502, "the alerting service answered 500"),
            ("rules", 502, "the alerting service's answer is too large"),
            ("stats", 503, "the alerting service is unavailable; retry later"),
        ):
            resp = await api.get(f"/{TENANT}/console/api/{path}", headers=bearer(key))
            assert (resp.status, (await resp.json())["error"]) == (status, reason), path
        # An answer larger than one network read is passed on whole (it was cut).
        resp = await api.get(f"/{TENANT}/console/api/silences", headers=bearer(key))
        assert resp.status == 200
        assert len((await resp.json())["silences"]) == 100_000
    finally:
        await server.close()


async def test_open_streams_end_when_the_api_shuts_down(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
) -> None:
    """An open alert stream does not hold the api's shutdown until the drain times out."""
    key = await new_tenant(db, TENANT)
    alerting = await start_alerting()
    api = await start_console(start_api, api_settings, alerting)
    stream = await api.get(f"/{TENANT}/console/api/alerts/stream", headers=bearer(key))
    assert (await stream.content.readuntil(b"\n\n")) == b": connected\n\n"
    started = time.monotonic()
    assert api.server.runner is not None
    await api.server.runner.cleanup()
    assert time.monotonic() - started < 3
