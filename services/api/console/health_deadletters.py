"""Dead letters from the console: list (with their reasons), replay, purge.

The writer's dead-letter queue is handled by the writer's own `dlq` module, the one
`python -m services.writer dlq` runs, so the page and the CLI replay alike (back to the
hits exchange with `hit.batch`). Every other dead-letter queue (`<queue>.dlq` of the
alerting metrics and of each notification channel) replays to its work queue `<queue>`
through the default exchange: the same queue its original exchange and routing key led
to, without reaching other bindings. Either way a replay takes at most the messages
present when it starts, each acked only once the broker confirmed its copy, so a
message that fails again can't loop and none is lost.

A notification dead-lettered after its delivery failed is recorded as `failed`, and the
notify consumer skips a finished notification: so before a notification's copy goes
back, it is set pending again, as the notification log's replay does (the alerting
service's own `DeliveryStore.reopen`; `restore` undoes it if the copy can't be
published). Its attempts then count afresh.

Listing takes messages without acking and closes the channel, so they stay queued.
Only queue names of this prefix's topology are accepted (`dead_letter_queues`).
"""

from __future__ import annotations

import re
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelClosed

from services.alerting.notify.store import DeliveryStore
from services.api.console.health_queues import connection
from services.writer import dlq as writer_dlq
from shared.ids import valid_tenant
from shared.topology import CHANNEL_TYPES, Topology

# Headers that describe the failure, not the message: dropped from a replayed copy.
FAILURE_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")
BELFRY_FAILURE_HEADERS = (
    "x-belfry-reason",
    "x-belfry-stage",
    "x-belfry-source-queue",
    "x-belfry-failed-at",
    "x-belfry-original-message-id",
    "x-belfry-attempt",  # a replay gets its full number of attempts again
    "x-belfry-attempts",
    "x-belfry-outcome",
)


# notification_id is a uuid column: anything else must not reach Postgres.
UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
REOPENABLE = ("failed", "refused")


class NotDeclared(Exception):
    """The queue does not exist on the broker (yet)."""


def dead_letter_queues(prefix: str) -> tuple[str, ...]:
    return tuple(q.name for q in Topology(prefix).spec().queues if q.name.endswith(".dlq"))


async def _passive(channel: AbstractChannel, name: str) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, passive=True)
    except ChannelClosed as exc:
        raise NotDeclared(f"queue {name} is not declared yet") from exc


async def list_dead_letters(
    amqp_url: str, queue: str, limit: int, timeout: float
) -> dict[str, Any]:
    async with connection(amqp_url, timeout) as conn:
        channel = await conn.channel()
        declared = await _passive(channel, queue)
        count = int(declared.declaration_result.message_count or 0)
        messages = []
        for _ in range(min(limit, count)):
            message = await declared.get(no_ack=False, fail=False)
            if message is None:
                break
            messages.append(writer_dlq.describe(message))
        # Closing the connection returns every unacked message to the queue.
    return {"queue": queue, "count": count, "messages": messages}


def notification_dlqs(prefix: str) -> tuple[str, ...]:
    return tuple(Topology(prefix).notify_dlq(kind) for kind in CHANNEL_TYPES)


def _notification_of(body: bytes) -> tuple[str, str] | None:
    """(tenant, notification id) of a notification envelope, or None."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    tenant = doc.get("tenant") if isinstance(data, dict) else None
    nid = data.get("notification_id") if isinstance(data, dict) else None
    if (
        isinstance(tenant, str)
        and valid_tenant(tenant)
        and isinstance(nid, str)
        and UUID.match(nid)
    ):
        return tenant, nid
    return None


async def _reopen(store: DeliveryStore, body: bytes) -> tuple[str, str, str] | None:
    """Set the failed notification of `body` pending again; (tenant, id, old status)
    for `restore`, or None when there was nothing to reopen."""
    found = _notification_of(body)
    if found is None:
        return None
    status = await store.status(*found)
    if status in REOPENABLE and await store.reopen(*found) is not None:
        return (*found, status)
    return None


def _replayed_copy(message: AbstractIncomingMessage, source: str) -> aio_pika.Message:
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if not k.startswith(FAILURE_HEADERS) and k not in BELFRY_FAILURE_HEADERS
    }
    headers["x-belfry-replayed-from"] = source
    return aio_pika.Message(
        message.body,
        content_type=message.content_type,
        type=message.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=writer_dlq.original_message_id(message),
        headers=headers,
    )


async def replay_dead_letters(
    amqp_url: str,
    prefix: str,
    queue: str,
    limit: int | None,
    timeout: float,
    notifications: DeliveryStore | None = None,
) -> int:
    """Send up to `limit` (None: all present now) dead letters of `queue` back; the count.
    `notifications`: where a notification's delivery is recorded (notify queues only)."""
    if queue == Topology(prefix).writer_dlq:
        return await writer_dlq.replay_dead_letters(amqp_url, prefix, limit)
    target = queue.removesuffix(".dlq")
    replayed = 0
    async with connection(amqp_url, timeout) as conn:
        channel = await conn.channel(publisher_confirms=True)
        declared = await _passive(channel, queue)
        await _passive(channel, target)  # publishing to a missing queue would drop it
        waiting = int(declared.declaration_result.message_count or 0)
        for _ in range(waiting if limit is None else min(limit, waiting)):
            message = await declared.get(no_ack=False, fail=False)
            if message is None:
                break
            reopened = await _reopen(notifications, message.body) if notifications else None
            try:
                await channel.default_exchange.publish(_replayed_copy(message, queue), target)
            except BaseException:
                if notifications is not None and reopened is not None:
                    await notifications.restore(*reopened)
                raise
            await message.ack()
            replayed += 1
    return replayed


async def purge_dead_letters(amqp_url: str, queue: str, timeout: float) -> int:
    async with connection(amqp_url, timeout) as conn:
        declared = await _passive(await conn.channel(), queue)
        result = await declared.purge()
        return int(result.message_count or 0)
