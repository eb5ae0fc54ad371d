"""Queue depths are read on a channel of their own: a read that fails (here a queue that
does not exist, which makes the broker close the channel; a timeout does the same) costs
that round of figures, never the channel a service consumes on (closing it would drop the
delivery tags of every held message, and the broker would redeliver them all)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from shared.broker import Broker, SideChannel
from shared.selfreport import queue_messages_gauge, side_queue_depth
from tests.conftest import AMQP_URL


async def test_a_failed_depth_read_leaves_the_consuming_channel_open(prefix: str) -> None:
    broker = Broker(AMQP_URL, f"test-{prefix}")
    await broker.start()
    try:
        assert await broker.wait_available(10)
        consuming = broker.channel
        assert consuming is not None
        queue = await consuming.declare_queue(f"{prefix}.side", exclusive=True)
        gauge = queue_messages_gauge(CollectorRegistry())
        collect = side_queue_depth(SideChannel(broker), [f"{prefix}.missing"], 5, gauge)
        with pytest.raises(Exception, match=r"NOT_FOUND|no queue"):
            await collect()
        assert not consuming.is_closed
        (depth,) = await side_queue_depth(SideChannel(broker), [queue.name], 5, gauge)()
        assert depth.value == 0
    finally:
        await broker.stop()
