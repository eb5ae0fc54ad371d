"""Self-reported metric events: ingest and writer publish their figures to
`<prefix>.metrics`, read here from an exclusive queue bound with `metric.#`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from services.ingest.settings import IngestSettings
from services.writer.settings import WriterSettings
from shared.contracts import BATCH_V1, METRIC_V1, validate_envelope
from shared.topology import Topology
from tests.conftest import Started
from tests.integration.helpers import broker_up, ready
from tests.support.tcpproxy import TcpProxy

INTERVAL = 0.2
COMMON = {
    "belfry_heartbeat",
    "belfry_process_rss_bytes",
    "belfry_http_request_rate",
    "belfry_http_error_rate",
    "belfry_http_latency_p95_seconds",
}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Report:
    """One self-report message: its AMQP properties and its figures by (name, labels)."""

    routing_key: str
    message: AbstractIncomingMessage
    events: list[dict[str, Any]]

    @property
    def figures(self) -> dict[tuple[str, Labels], float]:
        return {
            (e["data"]["name"], tuple(sorted(e["data"]["labels"].items()))): e["data"]["value"]
            for e in self.events
        }

    def value(self, name: str, **labels: str) -> float:
        return self.figures[(name, tuple(sorted(labels.items())))]


class Inbox:
    """Reports as they arrive; `next()` awaits the first one matching, with a deadline."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Report] = asyncio.Queue()
        self.seen = 0

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        events = orjson.loads(message.body)
        self._queue.put_nowait(Report(message.routing_key or "", message, events))

    async def next(self, match: Callable[[Report], bool], timeout: float = 10.0) -> Report:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Report | None = None
        while True:
            try:
                report = await asyncio.wait_for(self._queue.get(), deadline - loop.time())
            except TimeoutError:
                raise AssertionError(
                    f"no matching metric report within {timeout}s "
                    f"({self.seen} seen; last: {last.figures if last else None})"
                ) from None
            self.seen += 1
            if match(report):
                return report
            last = report


@pytest.fixture
async def inbox(amqp: AbstractConnection, prefix: str) -> AsyncIterator[Inbox]:
    channel = await amqp.channel()
    # Declared exactly as shared.topology does (idempotent), so the binding can come first.
    exchange = await channel.declare_exchange(
        Topology(prefix).metrics_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="metric.#")
    box = Inbox()
    tag = await queue.consume(box.on_message, no_ack=True)
    yield box
    await queue.cancel(tag)
    await queue.delete(if_unused=False, if_empty=False)
    await channel.close()


def from_service(service: str) -> Callable[[Report], bool]:
    return lambda r: r.routing_key == f"metric.{service}"


def fast(settings: IngestSettings | WriterSettings) -> dict[str, Any]:
    return {"common": replace(settings.common, metrics_interval=INTERVAL)}


async def test_both_services_report_their_figures_soon_after_start(
    start_ingest: Started,
    start_writer: Started,
    ingest_settings: IngestSettings,
    writer_settings: WriterSettings,
    inbox: Inbox,
    prefix: str,
) -> None:
    started = datetime.now(UTC)
    await start_writer(**fast(writer_settings))
    await start_ingest(**fast(ingest_settings))

    ingest = await inbox.next(from_service("ingest"))
    writer = await inbox.next(from_service("writer"))

    topo = Topology(prefix)
    expected = {
        "ingest": {(n, (("service", "ingest"),)) for n in COMMON}
        | {("belfry_ingest_spool_bytes", (("service", "ingest"),))},
        "writer": {(n, (("service", "writer"),)) for n in COMMON}
        | {
            ("belfry_writer_lag_seconds", (("service", "writer"),)),
            ("belfry_queue_depth", (("queue", topo.writer_queue), ("service", "writer"))),
            ("belfry_queue_depth", (("queue", topo.writer_dlq), ("service", "writer"))),
        },
    }
    for service, report in (("ingest", ingest), ("writer", writer)):
        assert set(report.figures) == expected[service]
        assert len(report.events) == len(expected[service])  # one event per figure
        assert report.message.type == BATCH_V1
        assert report.message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert report.message.app_id == f"belfry-{service}"
        for event in report.events:
            envelope = validate_envelope(event)
            assert envelope.type == METRIC_V1
            assert envelope.tenant == "belfry"
            assert started <= envelope.occurred_at <= datetime.now(UTC)
        assert len({e["id"] for e in report.events}) == len(report.events)
        assert report.value("belfry_heartbeat", service=service) == 1
        assert report.value("belfry_process_rss_bytes", service=service) > 10_000_000
    assert ingest.value("belfry_ingest_spool_bytes", service="ingest") == 0


async def test_ingest_request_rate_follows_the_hits(
    start_ingest: Started, ingest_settings: IngestSettings, inbox: Inbox
) -> None:
    ingest = await start_ingest(**fast(ingest_settings))
    await ready(ingest)  # probes are not counted: the rate below is the pixels alone
    for i in range(5):
        resp = await ingest.get(f"/acme/pixel/e-{i}.gif")
        assert resp.status == 200

    def busy(r: Report) -> bool:
        return r.value("belfry_http_request_rate", service="ingest") > 0

    report = await inbox.next(lambda r: from_service("ingest")(r) and busy(r))
    assert report.value("belfry_http_error_rate", service="ingest") == 0
    assert 0 < report.value("belfry_http_latency_p95_seconds", service="ingest") < 1
    # The figures cover one interval each: with no more requests the rate returns to 0.
    quiet = await inbox.next(lambda r: from_service("ingest")(r) and not busy(r))
    assert quiet.value("belfry_http_latency_p95_seconds", service="ingest") == 0


async def test_writer_reports_the_depth_of_its_queue_and_dead_letter_queue(
    start_writer: Started,
    writer_settings: WriterSettings,
    inbox: Inbox,
    amqp: AbstractConnection,
    prefix: str,
) -> None:
    topo = Topology(prefix)
    writer = await start_writer(**fast(writer_settings))
    await broker_up(writer)
    # One message the writer can't decode: it lands, with its reason, in the DLQ.
    channel = await amqp.channel()
    hits = await channel.get_exchange(topo.hits_exchange)
    await hits.publish(aio_pika.Message(b"not json"), topo.HITS_ROUTING_KEY)
    await channel.close()

    def dead_lettered(r: Report) -> bool:
        return r.value("belfry_queue_depth", service="writer", queue=topo.writer_dlq) == 1

    report = await inbox.next(lambda r: from_service("writer")(r) and dead_lettered(r))
    assert report.value("belfry_queue_depth", service="writer", queue=topo.writer_queue) == 0
    # The same poll feeds the Prometheus gauge.
    text = await (await writer.get("/metrics")).text()
    assert f'belfry_queue_messages{{queue="{topo.writer_dlq}"}} 1.0' in text.splitlines()


async def test_reports_pause_while_the_broker_is_away_and_resume_after(
    start_ingest: Started, ingest_settings: IngestSettings, inbox: Inbox, rabbit_proxy: TcpProxy
) -> None:
    common = replace(
        ingest_settings.common,
        amqp_url=rabbit_proxy.url_for(ingest_settings.common.amqp_url),
        metrics_interval=INTERVAL,
    )
    ingest = await start_ingest(common=common)
    await inbox.next(from_service("ingest"))

    rabbit_proxy.cut()
    cut_at = datetime.now(UTC)
    # Several rounds are skipped meanwhile; the service keeps serving.
    resp = await ingest.get("/livez")
    assert resp.status == 200
    resp = await ingest.get("/acme/pixel/away.gif")
    assert resp.status == 200

    rabbit_proxy.heal()

    def after_cut(r: Report) -> bool:
        return min(validate_envelope(e).occurred_at for e in r.events) > cut_at

    report = await inbox.next(lambda r: from_service("ingest")(r) and after_cut(r), timeout=20)
    assert report.value("belfry_heartbeat", service="ingest") == 1
