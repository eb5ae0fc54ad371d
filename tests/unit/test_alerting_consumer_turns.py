"""The metric consumer never holds the event loop for a whole message: between envelopes
it lets other tasks run (the broker connection's RPC replies and heartbeats: starved for
seconds by a message of ~16,000 samples, a pending RPC timed out and aiormq closed the
channel, so every unacked message came back), and the messages the broker hands over at
once (prefetch, a task each) are still handled one at a time, in delivery order."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from services.alerting.consumer import MetricConsumer
from shared.contracts import make_envelope, now_iso
from shared.ids import new_event_id
from shared.samples import METRIC_V2, Sample, metric_v2_data
from shared.topology import Topology

TS = 1_764_560_000_000


class Engine:
    """Records what the consumer hands to the windows, and when (the real windows are
    tested in tests/alerting/; here only the consumer's scheduling is)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def observe_samples(
        self, tenant: str, samples: list[tuple[Any, ...]], carrier: Any
    ) -> int:  # the AlertEngine method's shape
        self.seen += [(tenant, sample[0]) for sample in samples]
        return len(samples)


class Message:
    """The parts of an aio-pika incoming message the consumer uses."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers: dict[str, Any] = {}
        self.routing_key = "metric.intake"
        self.acked = False

    async def ack(self) -> None:
        self.acked = True

    async def nack(self, requeue: bool = False) -> None:
        raise AssertionError("a valid message must not be nacked")


def _message(tag: str, envelopes: int) -> Message:
    at = now_iso()
    items = [
        make_envelope(
            new_event_id(),
            METRIC_V2,
            "acme",
            at,
            at,
            metric_v2_data([Sample(f"{tag}_{n}", 1.0, TS)]),
        )
        for n in range(envelopes)
    ]
    return Message(orjson.dumps(items))


def _consumer(engine: Engine) -> MetricConsumer:
    return MetricConsumer(engine, Topology("unit"))  # type: ignore[arg-type]


async def test_other_tasks_run_between_the_envelopes_of_a_message() -> None:
    engine = Engine()
    consumer = _consumer(engine)
    seen_by_other: list[int] = []

    async def other() -> None:  # e.g. the broker connection reading an RPC reply
        seen_by_other.append(len(engine.seen))

    message = _message("m", 3)
    handling = asyncio.create_task(consumer.on_message(message))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the consumer starts: the first envelope
    await other()
    await handling
    assert message.acked
    assert len(engine.seen) == 3
    assert 0 < seen_by_other[0] < 3  # it ran mid-message, not only after it


async def test_messages_delivered_together_are_handled_in_order() -> None:
    engine = Engine()
    consumer = _consumer(engine)
    first, second = _message("a", 3), _message("b", 3)
    await asyncio.gather(
        consumer.on_message(first),  # type: ignore[arg-type]
        consumer.on_message(second),  # type: ignore[arg-type]
    )
    assert [m for _, m in engine.seen] == ["a_0", "a_1", "a_2", "b_0", "b_1", "b_2"]
    assert first.acked and second.acked
    assert consumer.samples == 6
