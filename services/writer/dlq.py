"""Dead-letter queue operations: list (with reasons), replay (after a fix), purge.

`python -m services.writer dlq list|replay|purge [--limit N]`. Listing takes messages
without acking and closes the channel, so they stay in the queue. Replay republishes each
message to the hits exchange under confirms and only then acks it; it handles at most
the messages present when it started, so a message that fails again can't loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from shared.contracts import BATCH_V1
from shared.topology import Topology, declare_hits


@asynccontextmanager
async def _channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    conn = await aio_pika.connect(amqp_url, timeout=5)
    try:
        yield await conn.channel(publisher_confirms=True)
    finally:
        await conn.close()


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def original_message_id(message: AbstractIncomingMessage) -> str | None:
    """The id of the message that failed: a Belfry dead letter is a new message that
    names it in a header; one the broker dead-lettered is that message itself."""
    original = (message.headers or {}).get("x-belfry-original-message-id")
    return _text(original) if original is not None else message.message_id


def describe(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = message.headers or {}
    reason = headers.get("x-belfry-reason")
    stage = headers.get("x-belfry-stage")
    if reason is None and "x-first-death-reason" in headers:
        # Dead-lettered by the broker itself (delivery limit, rejection).
        reason = f"broker: {_text(headers['x-first-death-reason'])}"
        stage = "broker"
    try:
        body = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        body = None
    return {
        "message_id": original_message_id(message),
        "reason": _text(reason),
        "stage": _text(stage),
        "failed_at": _text(headers.get("x-belfry-failed-at")),
        "events": len(body) if isinstance(body, list) else None,  # a batch is an array
        "body": message.body[:300].decode("utf-8", "replace"),
    }


async def list_dead_letters(amqp_url: str, prefix: str, limit: int = 100) -> list[dict[str, Any]]:
    topo = Topology(prefix)
    out = []
    async with _channel(amqp_url) as channel:
        declared = await declare_hits(channel, topo)
        for _ in range(limit):
            message = await declared.writer_dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            out.append(describe(message))
        # Closing the channel returns every unacked message to the queue.
    return out


async def replay_dead_letters(amqp_url: str, prefix: str, limit: int | None = None) -> int:
    topo = Topology(prefix)
    replayed = 0
    async with _channel(amqp_url) as channel:
        declared = await declare_hits(channel, topo)
        waiting = declared.writer_dlq.declaration_result.message_count or 0
        todo = waiting if limit is None else min(limit, waiting)
        for _ in range(todo):
            message = await declared.writer_dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            republished = aio_pika.Message(
                message.body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                type=BATCH_V1,
                message_id=original_message_id(message),
                headers={"x-belfry-replayed-from": topo.writer_dlq},
            )
            await declared.hits.publish(republished, topo.HITS_ROUTING_KEY)
            await message.ack()
            replayed += 1
    return replayed


async def purge_dead_letters(amqp_url: str, prefix: str) -> int:
    topo = Topology(prefix)
    async with _channel(amqp_url) as channel:
        declared = await declare_hits(channel, topo)
        result = await declared.writer_dlq.purge()
        return int(result.message_count or 0)
