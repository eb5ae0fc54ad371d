"""`keep_firing_for` counts from the last breach, end to end on the fake clock: an alert
that kept breaching for minutes rides out a short dip (it counted from when it fired,
because ticks that changed nothing kept only the value, not the breach time)."""

from __future__ import annotations

import asyncpg

from services.alerting.rules import rule_from_doc
from services.alerting.store import upsert_rule
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    auth,
    engine_of,
    metric_event,
)


async def test_keep_firing_for_counts_from_the_last_breach(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    api_key: str,
) -> None:
    rule = rule_from_doc(
        {"name": "Hot", "condition": "x[10s] > 1", "keep_firing_for": "60s"},
        tenant=TENANT,
        rule_id="00000000-0000-4000-8000-00000000000b",
    )
    await upsert_rule(db, rule)
    client = await start_alerting()
    engine = engine_of(client)

    async def tick(value: float) -> str:
        await send_metrics(client, [metric_event("x", value, at=clock())])
        await engine.tick()
        resp = await client.get("/api/v1/alerts", headers=auth(api_key))
        (alert,) = (await resp.json())["alerts"]
        return str(alert["state"])

    assert await tick(5) == "firing"
    for _ in range(6):  # two minutes of breaching, 20 s apart (one sample per window)
        clock.advance(20)
        assert await tick(5) == "firing"
    clock.advance(20)  # 20 s after the last breach: still within keep_firing_for
    assert await tick(0.5) == "firing"
    clock.advance(50)  # 70 s after the last breach
    assert await tick(0.5) == "resolved"
