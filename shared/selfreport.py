"""Self-reported metric events: every service publishes its key figures to the metrics
exchange every few seconds, so the alerting service watches Belfry with the same rules
its users get.

Each round is ONE AMQP message (`batch.v1`: a JSON array of `metric.v1` envelopes, tenant
`belfry`) on `<prefix>.metrics` with routing key `metric.<service>`, persistent and under
publisher confirms. The figures are a heartbeat, the process RSS, the HTTP request rate,
error ratio and p95 latency since the previous round (`HttpStats.take()`), plus what the
service's collectors add (spool bytes, writer lag, queue depth). Every event carries the
label `service`.

Reporting is best effort: a round with the broker away is skipped (the request figures
then cover the longer window up to the next round that goes out), a failing collector
only loses its own figures, and nothing here ever raises into the service.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from prometheus_client import CollectorRegistry, Gauge

from shared.broker import Broker, SideChannel
from shared.contracts import BATCH_V1, METRIC_V1, encode_batch, make_envelope
from shared.failures import error_text
from shared.httpobs import HttpStats
from shared.ids import new_event_id
from shared.probes import _rss_bytes
from shared.tasks import stop_task

log = logging.getLogger("belfry.selfreport")

# Belfry's own figures are events of the internal tenant, apart from every user tenant.
TENANT = "belfry"

HEARTBEAT = "belfry_heartbeat"
RSS_BYTES = "belfry_process_rss_bytes"
HTTP_REQUEST_RATE = "belfry_http_request_rate"
HTTP_ERROR_RATE = "belfry_http_error_rate"
HTTP_LATENCY_P95 = "belfry_http_latency_p95_seconds"
QUEUE_DEPTH = "belfry_queue_depth"


def queue_messages_gauge(registry: CollectorRegistry) -> Gauge:
    """`belfry_queue_messages{queue}` on an app's registry, for `queue_depth` to set."""
    return Gauge(
        "belfry_queue_messages",
        "Messages ready in a Belfry queue at the last self-report poll",
        ["queue"],
        registry=registry,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """One figure of one round; the reporter adds the `service` label."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


Collector = Callable[[], Awaitable[Iterable[Sample]]]
# The metrics exchange on the current channel, or None while the broker is away.
ExchangeSource = Callable[[], Awaitable[AbstractExchange | None]]
Sleep = Callable[[float], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def broker_exchange(broker: Broker, name: str) -> ExchangeSource:
    """The exchange `name` on the broker's channel while it is available. Nothing is
    declared: the service's connect hook already declared it (shared.topology)."""

    async def source() -> AbstractExchange | None:
        channel = broker.channel
        if not broker.available or channel is None or channel.is_closed:
            return None
        return await channel.get_exchange(name, ensure=False)

    return source


def queue_depth(
    channel: Callable[[], AbstractChannel | None],
    queues: Sequence[str],
    gauge: Gauge,
) -> Collector:
    """Messages ready in each queue (a passive declare: it reads, never creates), as
    `belfry_queue_depth{queue}` events and the `belfry_queue_messages{queue}` gauge
    (`queue_messages_gauge` of the app's registry).

    The queues must exist (the service declared them on connect): a passive declare of
    a missing queue closes the channel, and the broker then reconnects and re-declares.
    """

    async def collect() -> list[Sample]:
        ch = channel()
        if ch is None:
            return []
        messages = gauge
        samples = []
        for name in queues:
            queue = await ch.declare_queue(name, passive=True)
            count = queue.declaration_result.message_count or 0
            messages.labels(name).set(count)
            samples.append(Sample(QUEUE_DEPTH, count, {"queue": name}))
        return samples

    return collect


def side_queue_depth(
    side: SideChannel, queues: Sequence[str], timeout: float, gauge: Gauge
) -> Collector:
    """`queue_depth` read through a channel of its own within `timeout` seconds, so a slow
    broker costs this round of figures, never the consuming channel's messages."""

    async def collect() -> list[Sample]:
        async with asyncio.timeout(timeout):
            channel = await side.get()
            return list(await queue_depth(lambda: channel, queues, gauge)())

    return collect


class MetricReporter:
    """Publishes the service's figures every `interval` seconds from `start()` to `stop()`.

    `report_once()` is one round; tests call it directly, with a fake exchange source,
    `now` and `new_id`, and drive the loop with a fake `sleep`.
    """

    def __init__(
        self,
        service: str,
        exchange: ExchangeSource,
        *,
        stats: HttpStats | None = None,
        collectors: Sequence[Collector] = (),
        interval: float = 5.0,
        timeout: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], datetime] = _utcnow,
        new_id: Callable[[], str] = new_event_id,
        rss: Callable[[], int] = _rss_bytes,
    ) -> None:
        self.service = service
        self.routing_key = f"metric.{service}"
        self.interval = interval
        self._exchange = exchange
        self._stats = stats
        self._collectors = list(collectors)
        self._timeout = timeout
        self._sleep = sleep
        self._now = now
        self._new_id = new_id
        self._rss = rss
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self._failing_collectors: set[int] = set()
        self.sent = 0

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"selfreport-{self.service}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        await stop_task(task)  # the loop checks the flag too

    async def _run(self) -> None:
        while not self._stopping:
            await self._sleep(self.interval)
            if self._stopping:
                return
            try:
                await self.report_once()
            except Exception:  # a bug in a round must not end the reports, nor the service
                log.exception("metric self-report failed")

    async def report_once(self) -> bool:
        """Collect and publish one round; True when the broker confirmed it."""
        try:
            exchange = await asyncio.wait_for(self._exchange(), self._timeout)
        except Exception as exc:
            return self._skipped(error_text(exc))
        if exchange is None:
            # Taking the HTTP figures now would lose them: keep counting until we can send.
            return self._skipped("broker unavailable")
        at = self._now().isoformat()
        envelopes = [self._envelope(s, at) for s in await self.collect()]
        message = aio_pika.Message(
            encode_batch(envelopes),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=self._new_id(),
            type=BATCH_V1,
            app_id=f"belfry-{self.service}",
        )
        try:
            # Not mandatory: until a consumer binds a queue the figures are simply unrouted;
            # the broker channel raises on returned messages.
            await asyncio.wait_for(
                exchange.publish(message, self.routing_key, mandatory=False), self._timeout
            )
        except Exception as exc:
            return self._skipped(error_text(exc))
        if self._failing:
            log.info("metric self-reports resumed")
            self._failing = False
        self.sent += 1
        return True

    async def collect(self) -> list[Sample]:
        """This round's figures: the common ones, then each collector's."""
        samples = [Sample(HEARTBEAT, 1), Sample(RSS_BYTES, self._rss())]
        if self._stats is not None:
            rate, errors, p95, _count = self._stats.take()
            samples += [
                Sample(HTTP_REQUEST_RATE, rate),
                Sample(HTTP_ERROR_RATE, errors),
                Sample(HTTP_LATENCY_P95, p95),
            ]
        for index, collector in enumerate(self._collectors):
            try:
                samples.extend(await asyncio.wait_for(collector(), self._timeout))
            except Exception as exc:  # lose this collector's figures, not the round
                # Warn when a collector starts failing, not every round it keeps failing.
                level = logging.DEBUG if index in self._failing_collectors else logging.WARNING
                self._failing_collectors.add(index)
                log.log(
                    level,
                    "metric collector failed",
                    extra={
                        "collector": getattr(collector, "__qualname__", repr(collector)),
                        "error": error_text(exc)[:300],
                    },
                )
            else:
                self._failing_collectors.discard(index)
        # JSON has no NaN/inf (orjson would write null and break the contract).
        return [s for s in samples if math.isfinite(s.value)]

    def _envelope(self, sample: Sample, at: str) -> dict[str, Any]:
        data = {
            "name": sample.name,
            "value": sample.value,
            "labels": {**sample.labels, "service": self.service},
        }
        return make_envelope(self._new_id(), METRIC_V1, TENANT, at, at, data)

    def _skipped(self, reason: str) -> bool:
        # Warn once per outage; the broker itself already logs its connection state.
        if not self._failing:
            self._failing = True
            log.warning("metric self-report skipped", extra={"reason": reason[:300]})
        else:
            log.debug("metric self-report skipped", extra={"reason": reason[:300]})
        return False
