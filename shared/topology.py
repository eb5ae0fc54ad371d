"""Broker topology: every exchange and queue Belfry declares, named under one prefix.

Declaring is idempotent, so every service declares what it touches at connect time and
`make run` declares everything once. Queues are quorum queues (replicated, durable) with
an explicit delivery limit; messages past it, or rejected, go to the dead-letter exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

# Redeliveries of one message before the broker dead-letters it (a crash loop guard).
DELIVERY_LIMIT = 20


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
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    # Queues
    @property
    def writer_queue(self) -> str:
        return f"{self.prefix}.writer.hits"

    @property
    def writer_dlq(self) -> str:
        return f"{self.prefix}.writer.hits.dlq"

    # Routing keys
    HITS_ROUTING_KEY = "hit.batch"
    WRITER_DLQ_KEY = "writer.hits"

    def queue_arguments(self, dead_letter_key: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": dead_letter_key,
        }


@dataclass(slots=True)
class HitTopology:
    """The declared objects the hot path uses."""

    hits: AbstractExchange
    dead_letters: AbstractExchange
    writer_queue: AbstractQueue
    writer_dlq: AbstractQueue


async def declare_hits(channel: AbstractChannel, topo: Topology) -> HitTopology:
    """Declare the hit path: exchange → writer queue, and its dead-letter queue."""
    hits = await channel.declare_exchange(
        topo.hits_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlx = await channel.declare_exchange(
        topo.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    await channel.declare_exchange(topo.metrics_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dlq = await channel.declare_queue(
        topo.writer_dlq, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(dlx, routing_key=topo.WRITER_DLQ_KEY)
    queue = await channel.declare_queue(
        topo.writer_queue, durable=True, arguments=topo.queue_arguments(topo.WRITER_DLQ_KEY)
    )
    await queue.bind(hits, routing_key="hit.#")
    return HitTopology(hits=hits, dead_letters=dlx, writer_queue=queue, writer_dlq=dlq)


async def delete_all(channel: AbstractChannel, topo: Topology) -> None:
    """Remove every object under the prefix (test clean-up; never used in production)."""
    for queue in (topo.writer_queue, topo.writer_dlq):
        await channel.queue_delete(queue)
    for exchange in (topo.hits_exchange, topo.metrics_exchange, topo.dead_letter_exchange):
        await channel.exchange_delete(exchange)
