"""The writer's metrics live on its app's own registry (shared.prom): two writer apps
(or consumers) in one process count separately, each `/metrics` serves its own app's
figures and none of prometheus_client's default registry, and nothing of the writer
sits on the latter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import REGISTRY, Counter

from services.writer.consumer import HitConsumer
from services.writer.keys import CONSUMER, METRICS, WriterDeps
from services.writer.settings import WriterSettings
from shared.contracts import HIT_OPEN_V1, Event, make_envelope
from shared.ids import new_event_id
from shared.prom import PROMETHEUS
from shared.settings import CommonSettings
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.integration.test_prometheus_text import sample, scrape

ROWS = "belfry_writer_rows_inserted_total"


class CountingStore:
    """Stores nothing, reports every event new: no Postgres rows to tell apart."""

    async def insert_hits(self, events: list[Event]) -> int:
        return len(events)


class Message:
    """What the consumer reads of a delivery, and an event set once it is acked."""

    def __init__(self, n: int) -> None:
        now = datetime.now(UTC).isoformat()
        hits = [
            make_envelope(new_event_id(), HIT_OPEN_V1, "acme", now, now, {"email_id": f"e{i}"})
            for i in range(n)
        ]
        self.body = orjson.dumps(hits)
        self.headers: dict[str, Any] = {}
        self.message_id = "m"
        self.acked = asyncio.Event()

    async def ack(self) -> None:
        self.acked.set()


async def _store(consumer: HitConsumer, rows: int) -> None:
    message = Message(rows)
    await consumer.on_message(message)  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        await message.acked.wait()  # the flusher stored and acked it


async def test_two_writer_apps_in_one_process_count_separately(start_writer: Started) -> None:
    first = await start_writer(deps=WriterDeps(store=CountingStore()))
    second = await start_writer(deps=WriterDeps(store=CountingStore()))
    await ready(first)
    await ready(second)
    await _store(first.app[CONSUMER], 3)
    await _store(second.app[CONSUMER], 1)

    assert sample(await scrape(first), ROWS) == 3
    assert sample(await scrape(second), ROWS) == 1
    registry = first.app[PROMETHEUS]
    assert registry.get_sample_value("belfry_writer_batch_rows_count") == 1
    assert second.app[PROMETHEUS].get_sample_value("belfry_writer_batch_rows_sum") == 1
    assert first.app[CONSUMER].metrics is first.app[METRICS]
    # Each app's lag gauge reads its own consumer.
    first.app[CONSUMER]._last_lag, second.app[CONSUMER]._last_lag = 7.0, 2.0
    assert registry.get_sample_value("belfry_writer_lag_seconds") == 7.0
    assert second.app[PROMETHEUS].get_sample_value("belfry_writer_lag_seconds") == 2.0
    # Nothing of the writer on the process's default registry.
    assert REGISTRY.get_sample_value(ROWS) is None
    assert REGISTRY.get_sample_value("belfry_writer_lag_seconds") is None


async def test_writer_metrics_serves_no_module_global(start_writer: Started) -> None:
    stray = Counter("belfry_unit_writer_stray", "a module global on the default registry")
    stray.inc()
    try:
        text = await scrape(await start_writer(deps=WriterDeps(store=CountingStore())))
    finally:
        REGISTRY.unregister(stray)
    assert "belfry_unit_writer_stray" not in text
    assert "belfry_writer_lag_seconds" in text  # its own, and the process figures of its own
    assert "process_resident_memory_bytes" in text


async def test_consumers_built_without_an_app_count_on_their_own() -> None:
    settings = WriterSettings(common=CommonSettings(service="writer"), batch_delay=0.001)
    one, other = HitConsumer(settings, CountingStore()), HitConsumer(settings, CountingStore())
    one.start()
    try:
        await _store(one, 2)
    finally:
        await one.stop()
    assert _count(one) == 2
    assert _count(other) == 0


def _count(consumer: HitConsumer) -> float:
    (family,) = consumer.metrics.rows_inserted.collect()
    return next(s.value for s in family.samples if s.name == ROWS)
