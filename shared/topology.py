"""Broker topology: every exchange, queue and binding Belfry uses, named under one prefix.

The topology is data first (`Topology.spec()`), so the code that declares it, the test
clean-up that deletes it and `infra/rabbitmq/definitions.json` (compared in a test) all
read one list. Declaring is idempotent: every service declares what it touches at connect
time and `make run` declares everything once.

Queues are quorum queues (replicated, durable) with an explicit delivery limit; messages
past it, or rejected, go to the dead-letter exchange `<prefix>.dlx`, one dead-letter queue
per work queue.

Notifications: `<prefix>.notify` routes by channel type (webhook, slack, email,
alertmanager, pagerduty, log) to one work queue per type, so one failing channel never delays
another. A retry is published to a delay queue of that type (per-message `expiration` =
the backoff; the queue's TTL caps it), which dead-letters it back to `<prefix>.notify`
with the type as routing key when it expires. Delay queues are bucketed by the longest
delay they hold so a short retry never waits behind a long one for more than its
bucket's span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

# Redeliveries of one message before the broker dead-letters it (a crash loop guard).
DELIVERY_LIMIT = 20

CHANNEL_TYPES = ("webhook", "slack", "email", "alertmanager", "pagerduty", "log")
# Delay-queue buckets: (suffix, longest delay in ms).
DELAY_BUCKETS: tuple[tuple[str, int], ...] = (
    ("1s", 1_000),
    ("10s", 10_000),
    ("1m", 60_000),
    ("10m", 600_000),
    ("1h", 3_600_000),
)


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    name: str
    type: str  # "topic" | "direct"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class BindingSpec:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class TopologySpec:
    exchanges: tuple[ExchangeSpec, ...]
    queues: tuple[QueueSpec, ...]
    bindings: tuple[BindingSpec, ...]

    def part(self, queue_prefix: str) -> TopologySpec:
        """Every exchange, and the queues (with their bindings) whose names start so."""
        queues = tuple(q for q in self.queues if q.name.startswith(queue_prefix))
        names = {q.name for q in queues}
        return TopologySpec(
            self.exchanges, queues, tuple(b for b in self.bindings if b.queue in names)
        )


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str

    # Exchanges
    @property
    def hits_exchange(self) -> str:
        return f"{self.prefix}.hits"

    @property
    def metrics_exchange(self) -> str:
        return f"{self.prefix}.metrics"

    @property
    def notify_exchange(self) -> str:
        return f"{self.prefix}.notify"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    # Queues
    @property
    def writer_queue(self) -> str:
        return f"{self.prefix}.writer.hits"

    @property
    def writer_dlq(self) -> str:
        return f"{self.prefix}.writer.hits.dlq"

    @property
    def alerting_queue(self) -> str:
        """Metric events for rule evaluation."""
        return f"{self.prefix}.alerting.metrics"

    @property
    def alerting_dlq(self) -> str:
        return f"{self.prefix}.alerting.metrics.dlq"

    def notify_queue(self, channel_type: str) -> str:
        return f"{self.prefix}.notify.{channel_type}"

    def notify_dlq(self, channel_type: str) -> str:
        return f"{self.prefix}.notify.{channel_type}.dlq"

    def delay_queue(self, channel_type: str, delay_ms: int) -> str:
        """The delay queue a retry of `delay_ms` waits in (the smallest bucket that fits;
        longer delays wait in the last bucket, whose TTL caps them)."""
        suffix = next((s for s, longest in DELAY_BUCKETS if delay_ms <= longest), "1h")
        return f"{self.prefix}.notify.{channel_type}.delay.{suffix}"

    # Routing keys
    HITS_ROUTING_KEY = "hit.batch"
    WRITER_DLQ_KEY = "writer.hits"
    ALERTING_DLQ_KEY = "alerting.metrics"

    @staticmethod
    def notify_dlq_key(channel_type: str) -> str:
        return f"notify.{channel_type}"

    def queue_arguments(self, dead_letter_key: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": dead_letter_key,
        }

    def spec(self) -> TopologySpec:
        """Everything Belfry declares under this prefix."""
        quorum = {"x-queue-type": "quorum"}
        exchanges = (
            ExchangeSpec(self.hits_exchange, "topic"),
            ExchangeSpec(self.metrics_exchange, "topic"),
            ExchangeSpec(self.notify_exchange, "direct"),
            ExchangeSpec(self.dead_letter_exchange, "direct"),
        )
        queues = [
            QueueSpec(self.writer_queue, self.queue_arguments(self.WRITER_DLQ_KEY)),
            QueueSpec(self.writer_dlq, quorum),
            QueueSpec(self.alerting_queue, self.queue_arguments(self.ALERTING_DLQ_KEY)),
            QueueSpec(self.alerting_dlq, quorum),
        ]
        bindings = [
            BindingSpec(self.hits_exchange, self.writer_queue, "hit.#"),
            BindingSpec(self.dead_letter_exchange, self.writer_dlq, self.WRITER_DLQ_KEY),
            BindingSpec(self.metrics_exchange, self.alerting_queue, "metric.#"),
            BindingSpec(self.dead_letter_exchange, self.alerting_dlq, self.ALERTING_DLQ_KEY),
        ]
        for kind in CHANNEL_TYPES:
            dlq_key = self.notify_dlq_key(kind)
            queues.append(QueueSpec(self.notify_queue(kind), self.queue_arguments(dlq_key)))
            queues.append(QueueSpec(self.notify_dlq(kind), quorum))
            bindings.append(BindingSpec(self.notify_exchange, self.notify_queue(kind), kind))
            bindings.append(BindingSpec(self.dead_letter_exchange, self.notify_dlq(kind), dlq_key))
            for _suffix, longest in DELAY_BUCKETS:
                queues.append(
                    QueueSpec(
                        self.delay_queue(kind, longest),
                        {
                            "x-queue-type": "quorum",
                            "x-message-ttl": longest,
                            "x-dead-letter-exchange": self.notify_exchange,
                            "x-dead-letter-routing-key": kind,
                        },
                    )
                )
        return TopologySpec(exchanges, tuple(queues), tuple(bindings))


_EXCHANGE_TYPES = {"topic": aio_pika.ExchangeType.TOPIC, "direct": aio_pika.ExchangeType.DIRECT}


async def declare(
    channel: AbstractChannel, spec: TopologySpec
) -> tuple[dict[str, AbstractExchange], dict[str, AbstractQueue]]:
    """Declare `spec` (idempotent); returns the declared objects by name."""
    exchanges = {
        ex.name: await channel.declare_exchange(ex.name, _EXCHANGE_TYPES[ex.type], durable=True)
        for ex in spec.exchanges
    }
    queues = {
        q.name: await channel.declare_queue(q.name, durable=True, arguments=q.arguments)
        for q in spec.queues
    }
    for b in spec.bindings:
        await queues[b.queue].bind(exchanges[b.exchange], routing_key=b.routing_key)
    return exchanges, queues


async def declare_all(channel: AbstractChannel, topo: Topology) -> None:
    await declare(channel, topo.spec())


@dataclass(slots=True)
class HitTopology:
    """The declared objects the hot path uses."""

    hits: AbstractExchange
    dead_letters: AbstractExchange
    writer_queue: AbstractQueue
    writer_dlq: AbstractQueue


async def declare_hits(channel: AbstractChannel, topo: Topology) -> HitTopology:
    """Declare the hit path: the exchanges, the writer queue and its dead-letter queue."""
    exchanges, queues = await declare(channel, topo.spec().part(f"{topo.prefix}.writer."))
    return HitTopology(
        hits=exchanges[topo.hits_exchange],
        dead_letters=exchanges[topo.dead_letter_exchange],
        writer_queue=queues[topo.writer_queue],
        writer_dlq=queues[topo.writer_dlq],
    )


async def delete_all(channel: AbstractChannel, topo: Topology) -> None:
    """Remove every object under the prefix (test clean-up; never used in production)."""
    spec = topo.spec()
    for queue in spec.queues:
        await channel.queue_delete(queue.name)
    for exchange in spec.exchanges:
        await channel.exchange_delete(exchange.name)
