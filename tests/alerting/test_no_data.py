"""Series that stop reporting, end to end on the real broker and database on the fake
clock, to a real webhook receiver: the three no-data modes of a firing alert (alert: a
`firing` with no value, resolve: `resolved`, keep: nothing) with the state and the
`no_data` flag the API shows, and quiet series leaving the per-metric series cap."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.alerting.rules import rule_from_doc
from services.alerting.store import upsert_rule
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Receiver,
    Send,
    StartAlerting,
    add_webhook,
    auth,
    engine_of,
    metric_event,
    webhook_alerts,
)

SERIES = {"service": "api"}


async def _rule(db: asyncpg.Connection, mode: str) -> None:
    rule = rule_from_doc(
        {
            "name": "Latency",
            "condition": "latency[10s] > 1",  # no data after 3 windows: 30 s without samples
            "no_data": {"mode": mode, "windows": 3},
            "annotations": {"summary": "{{ labels.service }} at {{ value }}"},
            "channels": ["hook"],
        },
        tenant=TENANT,
        rule_id="00000000-0000-4000-8000-00000000000a",
    )
    await upsert_rule(db, rule)


async def _tick_with(client: TestClient, send: Send, clock: FakeClock, value: float) -> None:
    await send(client, [metric_event("latency", value, SERIES, at=clock())])
    await engine_of(client).tick()


async def _api_alert(client: TestClient, key: str) -> dict[str, Any]:
    resp = await client.get("/api/v1/alerts", headers=auth(key))
    assert resp.status == 200
    (alert,) = (await resp.json())["alerts"]
    return alert  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["alert", "resolve", "keep"])
async def test_a_firing_series_that_stops_follows_its_no_data_mode(
    mode: str,
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    webhook_receiver: Receiver,
    api_key: str,
) -> None:
    await add_webhook(db, "hook", webhook_receiver)
    await _rule(db, mode)
    client = await start_alerting()
    engine = engine_of(client)
    await _tick_with(client, send_metrics, clock, 5)
    await webhook_receiver.wait(1)

    clock.advance(20)  # quiet, but not for 3 windows yet: nothing changes
    await engine.tick()
    assert (await _api_alert(client, api_key))["no_data"] is False
    clock.advance(15)  # 35 s without a sample
    await engine.tick()
    quiet = await _api_alert(client, api_key)
    assert quiet["no_data"] is True
    assert quiet["state"] == {"alert": "firing", "resolve": "resolved", "keep": "firing"}[mode]

    clock.advance(5)
    await _tick_with(client, send_metrics, clock, 0.5)  # data again, below the threshold
    back = await _api_alert(client, api_key)
    assert back["no_data"] is False and back["state"] == "resolved"

    expected = {
        "alert": ["firing", "firing", "resolved"],  # the second firing says "no data"
        "resolve": ["firing", "resolved"],  # data again changes nothing: already resolved
        "keep": ["firing", "resolved"],  # nothing while quiet
    }[mode]
    await webhook_receiver.wait(len(expected))
    sent = webhook_alerts(webhook_receiver)
    assert [status for status, _ in sent] == expected
    assert sent[0][1]["annotations"] == {"summary": "api at 5"}
    if mode != "keep":
        assert sent[1][1]["annotations"] == {"summary": "api at no data"}
    assert {a["fingerprint"] for _, a in sent} == {quiet["fingerprint"]}


async def test_series_that_stopped_reporting_leave_room_under_the_series_cap(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
) -> None:
    """The cap (ALERTING's 10 000 series per metric, 2 here) counts only series some
    window still sees: once the old ones are out of every window, a new one is taken."""
    await _rule(db, "resolve")
    client = await start_alerting()
    engine = engine_of(client)
    engine.samples.max_series = 2
    old = [metric_event("latency", 0.1, {"service": s}, at=clock()) for s in ("a", "b")]
    await send_metrics(client, old)
    await engine.tick()
    await send_metrics(client, [metric_event("latency", 5, {"service": "c"}, at=clock())])
    assert engine.samples.dropped_series == 1  # full: refused

    clock.advance(11)  # a and b are out of the 10 s window
    await engine.tick()
    await send_metrics(client, [metric_event("latency", 5, {"service": "c"}, at=clock())])
    await engine.tick()
    assert engine.samples.dropped_series == 1
    states = {a.labels["service"]: a.state for a in engine.alerts.values()}
    assert states == {"a": "inactive", "b": "inactive", "c": "firing"}
