"""A real Alertmanager keeps Belfry's alert active while Belfry fires it, however short
its `resolve_timeout`, and resolves it as soon as Belfry does: the alert path end to end
(metric → engine → outbox → notify → Alertmanager) with the resend of active alerts.

Times are scaled down from the issue's (resolve_timeout 20 s, kept for 60 s, resend
60 s): resolve_timeout 2 s, resend every second, kept active for 3 x resolve_timeout."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from services.alerting.keys import ENGINE
from services.alerting.notify.routes import NOTIFY
from services.alerting.rules import rule_from_doc
from services.alerting.settings import AlertingSettings
from services.alerting.store import upsert_rule
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    metric_event,
)
from tests.alerting.notify.conftest import run_alertmanager
from tests.support.eventually import eventually

RESOLVE_TIMEOUT = 2.0
RESEND = 1.0


@pytest.fixture
def clock() -> FakeClock:
    # Real time (frozen unless advanced): Alertmanager compares startsAt with its now.
    return FakeClock(datetime.now(UTC))


async def _active(session: aiohttp.ClientSession, url: str, name: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/v2/alerts") as resp:
        alerts = await resp.json()
    return [a for a in alerts if a["labels"].get("alertname") == name]


async def test_alertmanager_keeps_the_alert_while_belfry_fires_and_resolves_with_it(
    tmp_path: Path,
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    alerting_settings: AlertingSettings,
    send_metrics: Send,
    clock: FakeClock,
) -> None:
    name = f"ResendTest{time.time_ns()}"
    async with run_alertmanager(tmp_path, resolve_timeout=f"{RESOLVE_TIMEOUT:g}s") as url:
        await db.execute(
            "INSERT INTO alert_channels (tenant_id, name, type, config)"
            " VALUES ($1, 'am', 'alertmanager', $2::jsonb)",
            TENANT,
            orjson.dumps({"url": url}).decode(),
        )
        rule = rule_from_doc(
            {"name": name, "channels": ["am"], "condition": "latency > 1"},
            tenant=TENANT,
            rule_id=str(uuid.uuid4()),
        )
        await upsert_rule(db, rule)
        notify = replace(alerting_settings.notify, alertmanager_resend=RESEND)
        client = await start_alerting(notify=notify)
        assert client.app is not None
        engine = client.app[ENGINE]

        async def step(value: float) -> None:
            clock.advance(1)
            sample = metric_event("latency", value, {"service": "api"}, at=clock())
            await send_metrics(client, [sample])
            await engine.tick()

        async with aiohttp.ClientSession() as session:
            await step(5.0)
            await eventually(
                lambda: _active(session, url, name), bool, timeout=10, what="alert in AM"
            )
            # Active across three resolve_timeouts: the resends move endsAt ahead.
            deadline = time.monotonic() + 3 * RESOLVE_TIMEOUT
            while time.monotonic() < deadline:
                (alert,) = await _active(session, url, name)
                assert alert["status"]["state"] == "active"
                await asyncio.sleep(0.25)  # sampling the state over time, not waiting for it
            resender = client.app[NOTIFY].resender
            assert resender is not None and resender.sent >= 3

            await step(0.2)  # Belfry resolves
            resolved_at = time.monotonic()
            await eventually(
                lambda: _active(session, url, name),
                lambda found: found == [],
                timeout=RESEND + 2,
                what="alert resolved in AM",
            )
            assert time.monotonic() - resolved_at <= RESEND + 1.0
