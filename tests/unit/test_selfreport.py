"""MetricReporter rounds against a fake exchange: what one message carries, and that a
broker away, a failing publish or a failing collector never raises into the service."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from shared.contracts import BATCH_V1, METRIC_V1, validate_envelope
from shared.httpobs import HttpStats
from shared.selfreport import MetricReporter, Sample, queue_depth, queue_messages_gauge
from shared.settings import CommonSettings, SettingsError

NOW = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)


class FakeExchange:
    """Records what is published; can fail like a closed channel."""

    def __init__(self) -> None:
        self.published: list[tuple[aio_pika.Message, str, bool]] = []
        self.fail = False

    async def publish(
        self, message: aio_pika.Message, routing_key: str, *, mandatory: bool = True
    ) -> None:
        if self.fail:
            raise ConnectionError("channel closed")
        self.published.append((message, routing_key, mandatory))

    def events(self, index: int = -1) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = orjson.loads(self.published[index][0].body)
        return body


class Source:
    """The reporter's exchange source: the fake exchange, or None while the broker is away."""

    def __init__(self) -> None:
        self.exchange: FakeExchange | None = FakeExchange()

    async def __call__(self) -> Any:
        return self.exchange


def ids() -> Any:
    counter = iter(range(1_000_000))
    return lambda: f"0190a1b2-c3d4-7e5f-8a9b-{next(counter):012d}"


def reporter(source: Source, **kwargs: Any) -> MetricReporter:
    kwargs.setdefault("now", lambda: NOW)
    kwargs.setdefault("new_id", ids())
    kwargs.setdefault("rss", lambda: 123_456)
    return MetricReporter("ingest", source, **kwargs)


def figures(events: list[dict[str, Any]]) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    return {
        (e["data"]["name"], tuple(sorted(e["data"]["labels"].items()))): e["data"]["value"]
        for e in events
    }


async def test_one_round_is_one_persistent_batch_of_valid_metric_envelopes() -> None:
    stats = HttpStats()
    stats.started -= 2.0  # two seconds of traffic: 4 requests → 2 req/s
    for status, seconds in ((200, 0.010), (200, 0.020), (200, 0.030), (503, 0.040)):
        stats.observe(status, seconds)

    async def spool() -> list[Sample]:
        return [Sample("belfry_ingest_spool_bytes", 4096)]

    source = Source()
    assert await reporter(source, stats=stats, collectors=[spool]).report_once() is True

    assert source.exchange is not None
    [(message, routing_key, mandatory)] = source.exchange.published
    assert routing_key == "metric.ingest"
    assert mandatory is False  # unrouted figures must not raise on the confirm channel
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.type == BATCH_V1
    assert message.content_type == "application/json"
    assert message.app_id == "belfry-ingest"
    events = source.exchange.events()
    for event in events:
        envelope = validate_envelope(event)
        assert envelope.type == METRIC_V1
        assert envelope.tenant == "belfry"
        assert envelope.occurred_at == NOW
        assert envelope.received_at == NOW
    assert len({e["id"] for e in events} | {message.message_id}) == len(events) + 1
    got = figures(events)
    svc = (("service", "ingest"),)
    assert set(got) == {
        ("belfry_heartbeat", svc),
        ("belfry_process_rss_bytes", svc),
        ("belfry_http_request_rate", svc),
        ("belfry_http_error_rate", svc),
        ("belfry_http_latency_p95_seconds", svc),
        ("belfry_ingest_spool_bytes", svc),
    }
    assert got[("belfry_heartbeat", svc)] == 1
    assert got[("belfry_process_rss_bytes", svc)] == 123_456
    assert got[("belfry_http_request_rate", svc)] == pytest.approx(2.0, rel=0.05)
    assert got[("belfry_http_error_rate", svc)] == 0.25
    assert got[("belfry_http_latency_p95_seconds", svc)] == 0.040
    assert got[("belfry_ingest_spool_bytes", svc)] == 4096


async def test_http_figures_cover_only_the_time_since_the_previous_round() -> None:
    stats = HttpStats()
    stats.observe(200, 0.5)
    source = Source()
    rep = reporter(source, stats=stats)
    await rep.report_once()
    await rep.report_once()
    assert source.exchange is not None
    second = figures(source.exchange.events(-1))
    svc = (("service", "ingest"),)
    assert second[("belfry_http_request_rate", svc)] == 0
    assert second[("belfry_http_error_rate", svc)] == 0
    assert second[("belfry_http_latency_p95_seconds", svc)] == 0


async def test_collector_labels_are_kept_beside_the_service_label() -> None:
    async def depth() -> list[Sample]:
        return [Sample("belfry_queue_depth", 7, {"queue": "p.writer.hits"})]

    source = Source()
    await reporter(source, collectors=[depth]).report_once()
    assert source.exchange is not None
    got = figures(source.exchange.events())
    assert got[("belfry_queue_depth", (("queue", "p.writer.hits"), ("service", "ingest")))] == 7


async def test_broker_away_skips_the_round_without_raising_or_losing_http_figures() -> None:
    stats = HttpStats()
    stats.observe(200, 0.01)
    source = Source()
    exchange, source.exchange = source.exchange, None
    rep = reporter(source, stats=stats)
    assert await rep.report_once() is False
    assert stats.count == 1  # not taken: the next round that goes out still counts it

    source.exchange = exchange
    assert await rep.report_once() is True
    assert exchange is not None
    assert figures(exchange.events())[("belfry_http_request_rate", (("service", "ingest"),))] > 0


async def test_failing_publish_and_source_are_skipped_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Source()
    assert source.exchange is not None
    source.exchange.fail = True
    rep = reporter(source)
    with caplog.at_level(logging.DEBUG, logger="belfry.selfreport"):
        assert await rep.report_once() is False
        assert await rep.report_once() is False

        async def broken() -> Any:
            raise RuntimeError("channel in a bad state")

        rep._exchange = broken
        assert await rep.report_once() is False
    levels = [r.levelno for r in caplog.records if r.message == "metric self-report skipped"]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]

    rep._exchange = source
    source.exchange.fail = False
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="belfry.selfreport"):
        assert await rep.report_once() is True
    assert [r.message for r in caplog.records] == ["metric self-reports resumed"]
    assert rep.sent == 1


async def test_a_failing_collector_loses_only_its_own_figures() -> None:
    async def broken() -> list[Sample]:
        raise ConnectionError("queue declare failed")

    async def fine() -> list[Sample]:
        return [Sample("belfry_writer_lag_seconds", 0.25), Sample("nan", float("nan"))]

    source = Source()
    assert await reporter(source, collectors=[broken, fine]).report_once() is True
    assert source.exchange is not None
    names = [e["data"]["name"] for e in source.exchange.events()]
    assert names == ["belfry_heartbeat", "belfry_process_rss_bytes", "belfry_writer_lag_seconds"]


async def test_the_loop_sleeps_the_interval_between_rounds_and_stops_cleanly() -> None:
    slept: list[float] = []
    rounds = asyncio.Event()
    source = Source()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 3:  # three rounds went out: hold here until stop() cancels
            rounds.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    rep = reporter(source, interval=7.5, sleep=sleep)
    rep.start()
    await asyncio.wait_for(rounds.wait(), 5)
    await rep.stop()
    assert source.exchange is not None
    assert len(source.exchange.published) == 3
    assert set(slept) == {7.5}
    await rep.stop()  # idempotent


async def test_the_loop_survives_a_round_that_raises() -> None:
    source = Source()
    done = asyncio.Event()
    calls = 0

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    rep = reporter(source, sleep=sleep)

    async def flaky() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a round")
        done.set()
        return True

    rep.report_once = flaky  # type: ignore[method-assign]
    rep.start()
    await asyncio.wait_for(done.wait(), 5)
    await rep.stop()
    assert calls >= 2


@dataclass
class DeclareOk:
    message_count: int


@dataclass
class FakeQueue:
    declaration_result: DeclareOk


class FakeChannel:
    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths
        self.declared: list[tuple[str, bool]] = []

    async def declare_queue(self, name: str, *, passive: bool = False) -> FakeQueue:
        self.declared.append((name, passive))
        return FakeQueue(DeclareOk(self.depths[name]))


async def test_queue_depth_reads_passively_and_sets_the_prometheus_gauge() -> None:
    channel = FakeChannel({"unit.writer.hits": 12, "unit.writer.hits.dlq": 3})
    registry = CollectorRegistry()  # the app's (shared.prom)
    queues = ["unit.writer.hits", "unit.writer.hits.dlq"]
    collect = queue_depth(lambda: channel, queues, queue_messages_gauge(registry))
    samples = list(await collect())
    assert samples == [
        Sample("belfry_queue_depth", 12, {"queue": "unit.writer.hits"}),
        Sample("belfry_queue_depth", 3, {"queue": "unit.writer.hits.dlq"}),
    ]
    assert channel.declared == [("unit.writer.hits", True), ("unit.writer.hits.dlq", True)]
    gauge = "belfry_queue_messages"
    assert registry.get_sample_value(gauge, {"queue": "unit.writer.hits"}) == 12
    assert registry.get_sample_value(gauge, {"queue": "unit.writer.hits.dlq"}) == 3
    assert REGISTRY.get_sample_value(gauge, {"queue": "unit.writer.hits"}) is None


async def test_queue_depth_reads_nothing_while_the_broker_is_away() -> None:
    gauge = queue_messages_gauge(CollectorRegistry())
    assert list(await queue_depth(lambda: None, ["unit.writer.hits"], gauge)()) == []


def test_interval_setting_parses_and_rejects_nonsense() -> None:
    assert CommonSettings.from_env("x", {}).metrics_interval == 5.0
    parsed = CommonSettings.from_env("x", {"METRICS_REPORT_INTERVAL_SECONDS": "0.5"})
    assert parsed.metrics_interval == 0.5
    with pytest.raises(
        SettingsError,
        match=r"^METRICS_REPORT_INTERVAL_SECONDS must be a finite number >= 0\.1, got '0'$",
    ):
        CommonSettings.from_env("x", {"METRICS_REPORT_INTERVAL_SECONDS": "0"})
