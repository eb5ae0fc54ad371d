"""Every queue of the topology: depth, consumers, and how fast the backlog moves.

Read by AMQP passive declares (they read, never create) on a short-lived connection, so
the view needs neither the management plugin nor the api's self-report broker (which
tests and some deployments run without). A queue that is not declared yet (its service
never started) shows as missing; the passive declare of it closes the channel, so the
next queue gets a fresh one.

Rates are net: the change of a queue's depth per second since the previous look by any
viewer (`DepthSampler`), i.e. how fast a backlog grows (>0) or drains (<0). Publish and
deliver rates apart would need the management API.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import ChannelClosed

from shared.failures import error_text
from shared.topology import Topology

# Below this many seconds between two looks a rate is noise: the older sample is kept.
MIN_RATE_INTERVAL = 1.0


def queue_kind(name: str) -> str:
    if name.endswith(".dlq"):
        return "dead-letter"
    if ".delay." in name:
        return "delay"
    return "work"


@asynccontextmanager
async def connection(amqp_url: str, timeout: float) -> AsyncIterator[AbstractConnection]:
    conn = await aio_pika.connect(
        amqp_url, timeout=timeout, client_properties={"connection_name": "belfry-api-console"}
    )
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class DepthSampler:
    """The last depth seen of each queue, for net rates between two looks."""

    last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def rate(self, queue: str, depth: int, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        previous = self.last.get(queue)
        if previous is None:
            self.last[queue] = (now, depth)
            return None
        at, seen = previous
        if now - at < MIN_RATE_INTERVAL:
            return None
        self.last[queue] = (now, depth)
        return round((depth - seen) / (now - at), 3)


async def _depth(
    conn: AbstractConnection, channel: AbstractChannel, name: str
) -> tuple[AbstractChannel, dict[str, Any]]:
    """(the channel to go on with, the queue's figures)."""
    try:
        queue = await channel.declare_queue(name, passive=True)
    except ChannelClosed as exc:  # NOT_FOUND closes the channel: open another
        reason = "not declared yet" if "NOT_FOUND" in str(exc) else error_text(exc)
        return await conn.channel(), {"missing": reason}
    result = queue.declaration_result
    return channel, {
        "depth": int(result.message_count or 0),
        "consumers": int(result.consumer_count or 0),
    }


async def queue_figures(
    amqp_url: str, prefix: str, timeout: float, sampler: DepthSampler
) -> list[dict[str, Any]]:
    """One entry per queue of the topology (work, dead-letter, delay), in spec order."""
    out = []
    async with connection(amqp_url, timeout) as conn:
        channel = await conn.channel()
        for spec in Topology(prefix).spec().queues:
            channel, figures = await _depth(conn, channel, spec.name)
            entry = {"name": spec.name, "kind": queue_kind(spec.name), **figures}
            if "depth" in figures:
                entry["rate_per_second"] = sampler.rate(spec.name, figures["depth"])
            if entry["kind"] == "dead-letter":
                entry["replays_to"] = spec.name.removesuffix(".dlq")
            out.append(entry)
    return out
