"""The outbox relay while Postgres is away (a TCP proxy cut, the real server untouched):
it backs off instead of retrying every poll interval, logs one line when it starts
failing and one when it recovers, and publishes what is pending once Postgres is back.
Also the backoff schedule and log throttling of `retrying.Failures` on a fake clock."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace

import asyncpg
import pytest

from services.alerting.keys import RELAY
from services.alerting.retrying import Failures
from services.alerting.settings import AlertingSettings
from tests.alerting.conftest import StartAlerting
from tests.conftest import start_postgres_proxy
from tests.support.eventually import eventually

OUTBOX = "belfry.alerting.outbox"


def _relay_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == OUTBOX and "relay" in r.msg]


async def test_relay_backs_off_and_logs_failing_and_recovered_once(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    alerting_settings: AlertingSettings,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=OUTBOX)
    proxy = await start_postgres_proxy()
    try:
        common = replace(alerting_settings.common, database_url=proxy.url_for(database_url))
        client = await start_alerting(common=common, outbox_interval=0.05)
        relay = client.app[RELAY]  # type: ignore[index]
        proxy.cut()
        await asyncio.sleep(3)  # 60 polls' worth of the 0.05 s interval
        lines = _relay_lines(caplog)
        assert lines == ["outbox relay failing: retrying with backoff"], lines
        # Doubling from 0.05 s (jittered 0.5..1.5): about 6 attempts in 3 s, not 60.
        assert 2 <= relay.failures.failures <= 12
        assert relay.last_error

        proxy.heal()
        relay.wake()
        await eventually(
            lambda: _value(_relay_lines(caplog)),
            lambda got: got[-1:] == ["outbox relay recovered"],
            timeout=15,
            what="relay recovered",
        )
        assert len(_relay_lines(caplog)) == 2
    finally:
        await proxy.close()


async def _value(value: list[str]) -> list[str]:
    return value


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_failures_double_to_the_cap_and_log_state_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="test.failures")
    clock = _Clock()
    failures = Failures(
        logging.getLogger("test.failures"),
        "thing",
        base=1.0,
        cap=8.0,
        remind=60.0,
        clock=clock,
        rng=random.Random(1),
    )
    delays = []
    for _ in range(40):  # 40 failures, 5 s apart: one reminder after 60 s
        delays.append(failures.failed(ConnectionRefusedError(111, "")))
        clock.now += 5
    bases = [1, 2, 4, 8, 8, 8]
    for delay, base in zip(delays, bases, strict=False):
        assert base * 0.5 <= delay <= base * 1.5
    assert max(delays) <= 12
    failures.succeeded()
    failures.succeeded()  # nothing to recover from: no line
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "thing failing: retrying with backoff",
        "thing still failing",
        "thing still failing",
        "thing still failing",
        "thing recovered",
    ]
    first = caplog.records[0]
    assert first.error == "ConnectionRefusedError: [Errno 111] Connection refused"  # type: ignore[attr-defined]
    assert caplog.records[-1].failures == 40  # type: ignore[attr-defined]
    assert failures.delay() <= 1.5  # back to the start
