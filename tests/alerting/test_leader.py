"""One evaluator per database: a second alerting instance is a standby (not ready, not
consuming metric events) until the first lets go of the evaluator lock, then takes over
from the state in Postgres — so firing and resolved still go out once each."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from services.alerting.app import create_app
from services.alerting.keys import CONSUMER, AlertingDeps
from services.alerting.leader import STANDBY
from services.alerting.settings import AlertingSettings
from tests.alerting.conftest import (
    FakeClock,
    Send,
    StartAlerting,
    Tap,
    add_channel,
    engine_of,
    metric_event,
    ready,
)
from tests.alerting.test_flow import _rule
from tests.support.eventually import eventually


async def _readyz(client: TestClient) -> tuple[int, Any]:
    resp = await client.get("/readyz")
    return resp.status, await resp.json()


async def test_a_second_instance_waits_as_standby_then_takes_over(
    db: asyncpg.Connection,
    start_app: Any,
    start_alerting: StartAlerting,
    alerting_settings: AlertingSettings,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
) -> None:
    await add_channel(db, "ops", "webhook")
    await _rule(db, condition="latency > 1", channels=["ops"])
    leader = await start_alerting()
    standby: TestClient = await start_app(create_app(alerting_settings, AlertingDeps(clock=clock)))
    status, _ = await eventually(
        lambda: _readyz(standby),
        lambda r: STANDBY in str(r[1]),
        what="the second instance to report standby",
    )
    assert status == 503

    await send_metrics(leader, [metric_event("latency", 5, {"service": "api"}, at=clock())])
    await engine_of(leader).tick()
    await notify_tap.quiet(leader, 1)
    assert standby.app is not None and standby.app[CONSUMER].messages == 0
    assert not engine_of(standby).loaded

    await leader.close()  # its lock goes with its connection
    await ready(standby)
    engine = engine_of(standby)
    (alert,) = engine.alerts.values()
    assert alert.state == "firing" and alert.announced
    clock.advance(30)
    await send_metrics(standby, [metric_event("latency", 0.1, {"service": "api"}, at=clock())])
    await engine.tick()
    envelopes = await notify_tap.quiet(standby, 2)
    assert [e["data"]["status"] for e in envelopes] == ["firing", "resolved"]
