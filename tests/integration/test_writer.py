"""The writer: idempotent inserts, dead letters with reasons, the DLQ commands."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import orjson

from services.writer import dlq
from shared.contracts import HIT_CLICK_V1, HIT_OPEN_V1, make_envelope
from shared.ids import new_event_id
from shared.topology import Topology, declare_hits
from tests.conftest import AMQP_URL, Started
from tests.integration.helpers import ready, rows
from tests.support.eventually import eventually


def hit(email_id: str, kind: str = HIT_OPEN_V1, **data: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    if kind == HIT_CLICK_V1:
        data.setdefault("url", "https://example.com/")
    return make_envelope(new_event_id(), kind, "acme", now, now, {"email_id": email_id, **data})


async def publish(
    channel: aio_pika.abc.AbstractChannel, prefix: str, body: bytes, message_id: str | None = None
) -> None:
    declared = await declare_hits(channel, Topology(prefix))
    await declared.hits.publish(
        aio_pika.Message(
            body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id
        ),
        Topology.HITS_ROUTING_KEY,
    )


async def dlq_depth(prefix: str) -> int:
    return await queue_depth(Topology(prefix).writer_dlq)


async def test_same_batch_twice_stores_each_event_once(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    writer = await start_writer()
    await ready(writer)
    channel = await amqp.channel()
    batch = orjson.dumps([hit("a"), hit("b", ip="2001:db8::1"), hit("c", HIT_CLICK_V1)])
    await publish(channel, prefix, batch)
    await publish(channel, prefix, batch)
    # A later, distinct batch: once it is stored, both copies before it were handled.
    await publish(channel, prefix, orjson.dumps([hit("z")]))
    stored = await rows(db, 4)
    assert sorted(r["email_id"] for r in stored) == ["a", "b", "c", "z"]
    assert str(next(r["ip"] for r in stored if r["email_id"] == "b")) == "2001:db8::1"


async def queue_depth(queue_name: str) -> int:
    """Ready messages in the queue (passive declare): unacked ones not counted."""
    conn = await aio_pika.connect(AMQP_URL)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await conn.close()


async def test_a_batch_of_messages_is_settled_by_the_broker_with_one_ack(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    """Messages stored in one insert are acked with one `multiple` ack: once the writer
    has stopped (its channel closed), none of them comes back to the queue."""
    channel = await amqp.channel()
    for i in range(20):  # waiting before the writer starts: delivered, and stored, together
        await publish(channel, prefix, orjson.dumps([hit(f"m{i}")]))
    writer = await start_writer(batch_delay=0.2)
    await ready(writer)
    await rows(db, 20)
    await writer.close()
    assert await queue_depth(Topology(prefix).writer_queue) == 0


async def test_poison_goes_to_dead_letters_and_neighbours_are_stored(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    writer = await start_writer()
    await ready(writer)
    channel = await amqp.channel()
    bad_tenant = hit("x")
    bad_tenant["tenant"] = "Not A Tenant!"
    await publish(channel, prefix, b"{not json", "m-garbled")
    await publish(channel, prefix, b'{"a": 1, "b": 2, "c": 3}', "m-object")
    batch = orjson.dumps([hit("ok1"), bad_tenant, hit("ok2"), 42])
    await publish(channel, prefix, batch, "m-batch")

    stored = await rows(db, 2)
    assert sorted(r["email_id"] for r in stored) == ["ok1", "ok2"]
    await eventually(lambda: dlq_depth(prefix), lambda n: n == 4, what="4 dead letters")

    listed = await dlq.list_dead_letters(AMQP_URL, prefix)
    reasons = sorted((d["stage"], d["reason"]) for d in listed)
    assert reasons[0][0] == "decode" and reasons[0][1].startswith("body is not JSON")
    assert ("decode", "body is not a JSON array of envelopes") in reasons
    assert ("validate", "envelope is not an object") in reasons
    assert ("validate", "tenant is missing or not a valid tenant id") in reasons
    # Each names the message that failed (not the DLQ copy), and counts only a batch's
    # events: a JSON object is no batch, its keys are not events.
    ids_and_counts = sorted((d["message_id"], d["events"]) for d in listed)
    assert ids_and_counts == [
        ("m-batch", 1),
        ("m-batch", 1),
        ("m-garbled", None),
        ("m-object", None),
    ]
    # Listing does not consume.
    assert await dlq_depth(prefix) == 4
    assert await dlq.purge_dead_letters(AMQP_URL, prefix) == 4
    assert await dlq_depth(prefix) == 0


async def test_replay_moves_dead_letters_back_to_the_writer(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    # A valid batch parked in the DLQ (as after an outage past the delivery limit).
    channel = await amqp.channel()
    topo = Topology(prefix)
    declared = await declare_hits(channel, topo)
    await declared.dead_letters.publish(
        aio_pika.Message(orjson.dumps([hit("r1"), hit("r2")]), headers={"x-belfry-reason": "t"}),
        topo.WRITER_DLQ_KEY,
    )
    await eventually(lambda: dlq_depth(prefix), lambda n: n == 1, what="1 dead letter")
    assert await dlq.replay_dead_letters(AMQP_URL, prefix) == 1
    assert await dlq_depth(prefix) == 0
    writer = await start_writer()
    await ready(writer)
    stored = await rows(db, 2)
    assert sorted(r["email_id"] for r in stored) == ["r1", "r2"]
