"""`belfry_alerting_alerts{state,severity}` is kept by each commit's changes instead of a
recount of every alert per tick: after random transitions of many series (and a rule
deleted), what /metrics says equals a count of the engine's alerts."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

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


async def _gauge(client: TestClient) -> Counter[tuple[str, str]]:
    resp = await client.get("/metrics")
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(await resp.text()):
        if family.name == "belfry_alerting_alerts":
            for s in family.samples:
                if s.value:
                    counts[(s.labels["state"], s.labels["severity"])] = int(s.value)
    return counts


def _counted(client: TestClient) -> Counter[tuple[str, str]]:
    engine = engine_of(client)
    return Counter(
        (a.state, a.severity) for a in engine.alerts.values() if a.rule_id in engine.rules
    )


async def test_the_alerts_gauge_follows_every_commit(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    api_key: str,
) -> None:
    ids = []
    for name, condition, severity in (
        ("Slow", "latency > 1 for 30s", "warning"),
        ("VerySlow", "latency > 2", "critical"),
    ):
        doc = {"name": name, "condition": condition, "severity": severity}
        ids.append(
            await upsert_rule(db, rule_from_doc(doc, tenant=TENANT, rule_id=str(uuid.uuid4())))
        )
    client = await start_alerting()
    engine = engine_of(client)
    rng = random.Random(5)
    for _ in range(12):
        clock.advance(15)
        events = [
            metric_event("latency", rng.uniform(0, 3), {"service": f"s{i}"}, at=clock())
            for i in range(20)
        ]
        await send_metrics(client, events)
        await engine.tick()
        assert await _gauge(client) == _counted(client)
    assert len({a.state for a in engine.alerts.values()}) >= 3  # it did move around
    resp = await client.delete(f"/api/v1/rules/{ids[1]}", headers=auth(api_key))
    assert resp.status == 204
    assert await _gauge(client) == _counted(client)
