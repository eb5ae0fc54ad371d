"""What ingest published to `<prefix>.metrics`, read back from the real broker.

An exclusive queue bound with `metric.#` (the binding alerting's queue has) collects every
`metric.v2` envelope; tests wait for the samples they expect with `eventually`.
"""

from __future__ import annotations

from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from shared.topology import Topology
from tests.support.eventually import eventually


class MetricSink:
    def __init__(self, conn: AbstractConnection, prefix: str) -> None:
        self._conn = conn
        self._topo = Topology(prefix)
        self.envelopes: list[dict[str, Any]] = []
        self.routing_keys: set[str] = set()

    async def start(self) -> MetricSink:
        channel = await self._conn.channel()
        exchange = await channel.declare_exchange(
            self._topo.metrics_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "metric.#")
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        for envelope in orjson.loads(message.body):
            if envelope.get("type") == "metric.v2":
                self.envelopes.append(envelope)
                self.routing_keys.add(message.routing_key or "")

    def samples(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every sample received, each with its envelope's tenant under `tenant` (and the
        defaults the wire omits: `kind` gauge, no labels)."""
        return [
            {"kind": "gauge", "labels": {}, **s, "tenant": e["tenant"]}
            for e in self.envelopes
            if tenant is None or e["tenant"] == tenant
            for s in e["data"]["samples"]
        ]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.samples() if s["name"] == name]

    async def wait_for(self, *names: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until a sample of every name in `names` arrived; returns all samples."""

        async def received() -> set[str]:
            return {s["name"] for s in self.samples()}

        await eventually(
            received, lambda got: set(names) <= got, timeout=timeout, what=f"samples {names}"
        )
        return self.samples()
