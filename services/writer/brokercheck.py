"""The writer's channel for questions to the broker: readiness and queue depths.

Never the consuming channel: an RPC that fails or times out closes its channel, and
closing the consuming one drops every held message's delivery tag (the broker redelivers
them all). And a broker that is connected but does not answer (frozen, overloaded) must
make `/readyz` 503: `Broker.available` alone stays true until the heartbeat gives up,
so the check asks the broker something (a passive declare of the writer's queue) and
fails when no answer comes within `timeout` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel
from prometheus_client import Gauge

from services.writer.errors import error_text
from shared.broker import Broker, SideChannel
from shared.selfreport import Collector, side_queue_depth


class BrokerCheck:
    def __init__(self, broker: Broker, queue: str, timeout: float) -> None:
        self._broker = broker
        self._queue = queue
        self.timeout = timeout
        self._side = SideChannel(broker)

    async def channel(self) -> AbstractChannel | None:
        """The checks channel, (re)opened when needed; None while the broker is down."""
        return await self._side.get()

    async def check(self) -> str | None:
        """Readiness: None when the broker is connected and answers within `timeout`."""
        problem = await self._broker.check()
        if problem is not None:
            return problem
        try:
            async with asyncio.timeout(self.timeout):
                channel = await self.channel()
                if channel is None:
                    return await self._broker.check()
                await channel.declare_queue(self._queue, passive=True)
        except TimeoutError:
            return f"broker not answering within {self.timeout:g}s"
        except Exception as exc:  # the channel closed under us, the queue is gone, ...
            return f"broker check failed: {error_text(exc)}"
        return None

    def queue_depths(self, queues: Sequence[str], gauge: Gauge) -> Collector:
        """`shared.selfreport.queue_depth` of `queues`, read through the checks channel,
        into `gauge` (`belfry_queue_messages` of the app's registry)."""
        return side_queue_depth(self._side, queues, self.timeout, gauge)
