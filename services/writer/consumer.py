"""The thin adapter between RabbitMQ and the writer's handler.

Messages are decoded as they arrive and held unacked; a flusher task stores their
events in one transaction when enough rows wait (or `batch_delay` passed since the
batch's first message, or the prefetch window is full), dead-letters what can't be
stored with the reason in its headers, and then acks (the whole batch with one
`multiple` ack when nothing older is unacked on the channel). If Postgres is down the
flusher keeps the same batch and retries with jittered backoff: nothing is acked or requeued
meanwhile, the prefetch window stops the flow, and `/readyz` says why. If Postgres
refuses the data itself (a value it can't store), the batch is split until the refused
event is alone; that one is dead-lettered (stage `store`) and every other event stored,
so no message can wedge the writer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanKind
from prometheus_client import CollectorRegistry

from services.writer.errors import error_text, is_data_error
from services.writer.handler import DecodedMessage, StoreResult, decode_message, store_events
from services.writer.metrics import WriterMetrics
from services.writer.settings import WriterSettings
from services.writer.store import EventStore
from shared.backoff import Backoff
from shared.contracts import Event
from shared.deadletter import dead_letter_message
from shared.tasks import stop_task
from shared.topology import Topology
from shared.tracing import links_to, messaging_attributes, postgres_attributes

log = logging.getLogger("belfry.writer")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Held:
    message: AbstractIncomingMessage
    decoded: DecodedMessage
    oldest: datetime | None  # the earliest received_at of its events (None: none valid)


class HitConsumer:
    def __init__(
        self,
        settings: WriterSettings,
        store: EventStore,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        tracer: trace.Tracer | None = None,
        clock: Clock = utc_now,
        metrics: WriterMetrics | None = None,
    ) -> None:
        # The app's metrics; a consumer without an app (unit tests) counts on its own.
        self.metrics = metrics or WriterMetrics(CollectorRegistry())
        self.tracer = tracer
        self._clock = clock
        self.settings = settings
        self.topo = Topology(settings.common.prefix)
        self.store = store
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._held: list[Held] = []
        self._storing: list[Held] = []  # taken from _held, not yet acked
        self._last_lag = 0.0
        self._rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dead_letters: AbstractExchange | None = None
        self.db_error: str | None = None
        self.stored_batches = 0
        # A message of this channel was left unacked (its dead letter failed): a
        # `multiple` ack would settle it too, so each message is acked alone until the
        # channel is replaced.
        self._left_unacked = False

    # --- broker side --------------------------------------------------------------------

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        decoded = decode_message(message.body)
        oldest = min((e.received_at for e in decoded.events), default=None)
        self._held.append(Held(message, decoded, oldest))
        self._rows += len(decoded.events)
        if self._rows >= self.settings.batch_rows or len(self._held) >= self.settings.prefetch:
            self._wake.set()
        elif len(self._held) == 1:
            asyncio.get_running_loop().call_later(self.settings.batch_delay, self._wake.set)

    def on_disconnect(self) -> None:
        # Delivery tags of the dead channel can't be acked; the broker redelivers them.
        dropped, self._held, self._rows = self._held, [], 0
        self._left_unacked = False
        if dropped:
            log.warning("channel lost with unacked messages", extra={"messages": len(dropped)})

    # --- flushing -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="writer-flusher")

    async def stop(self, timeout: float = 10.0) -> None:
        """Store and ack what is held (SIGTERM drain), then stop."""
        self._stopping = True
        self._wake.set()
        await stop_task(self._task, grace=timeout)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._held:
                await self.flush()
            if self._stopping and not self._held:
                return

    def lag_seconds(self) -> float:
        """Writer lag: how long the oldest hit received but not yet stored has waited
        since ingest received it, so the figure grows while inserts fail or hang; with
        nothing waiting, the received → stored delay of the last stored batch."""
        oldest = min((h.oldest for h in (*self._storing, *self._held) if h.oldest), default=None)
        if oldest is None:
            return self._last_lag
        return max(0.0, (self._clock() - oldest).total_seconds())

    async def flush(self) -> None:
        batch, self._held, self._rows = self._held, [], 0
        self._storing = batch
        try:
            await self._flush(batch)
        finally:
            self._storing = []

    async def _flush(self, batch: list[Held]) -> None:
        events = [e for h in batch for e in h.decoded.events]
        if self.tracer is None:
            await self._store_and_ack(batch, events)
            return
        # One consumer span per stored batch, linked to every event's producing request
        # (and to each message's producer span), so Jaeger connects the hit to its row.
        links = links_to([e.trace for e in events] + [dict(h.message.headers or {}) for h in batch])
        if not links:  # no sampled hit in this batch: nothing to connect, no span
            await self._store_and_ack(batch, events)
            return
        # A child of the first event's request (so sampling follows the hits and that
        # hit's trace runs through to its row), linked to every producing context.
        parent = next(
            (trace.set_span_in_context(NonRecordingSpan(ln.context)) for ln in links), None
        )
        attributes = messaging_attributes(
            self.topo.hits_exchange,
            self.topo.HITS_ROUTING_KEY,
            "process",
            len(events),
            queue=self.topo.writer_queue,
        )
        with self.tracer.start_as_current_span(
            f"process {self.topo.writer_queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        ):
            await self._store_and_ack(batch, events)

    async def _insert(self, events: list[Event]) -> StoreResult:
        if self.tracer is None:
            return await store_events(events, self.store)
        attributes = postgres_attributes(
            self.settings.common.database_url, "INSERT", "events", len(events)
        )
        with self.tracer.start_as_current_span(
            "INSERT events", kind=SpanKind.CLIENT, attributes=attributes
        ):
            return await store_events(events, self.store)

    async def _store_and_ack(self, batch: list[Held], events: list[Event]) -> None:
        stored = await self._store(events)
        if stored is None:
            return  # stopping while the database is away: the broker redelivers after us
        result, refused = stored
        self.metrics.batch_rows.observe(len(events))
        self.metrics.rows_inserted.inc(result.inserted)
        self.metrics.duplicates.inc(result.duplicates)
        if events:
            newest = max(e.received_at for e in events)
            self._last_lag = max(0.0, (self._clock() - newest).total_seconds())
        self.stored_batches += 1
        log.debug(
            "batch stored",
            extra={
                "rows": result.inserted,
                "duplicates": result.duplicates,
                "refused": len(refused),
                "queue": self.topo.writer_queue,
            },
        )
        settled = [await self._settle(held, refused) for held in batch]
        if batch:
            await self._ack(batch, settled)

    async def _store(self, events: list[Event]) -> tuple[StoreResult, dict[int, str]] | None:
        """Store `events`: all of them, but those Postgres refuses. A batch refused for its
        data is split in halves until each refused event is alone, so one bad event can't
        hold back the rest; it comes back (by `id()`) with the reason, to dead-letter.
        None: stopped while the database was away."""
        refused: dict[int, str] = {}
        inserted = duplicates = 0
        todo = [events]
        while todo:
            part = todo.pop()
            try:
                result = await self._insert_retrying(part)
            except Exception as exc:  # only data errors get here
                if len(part) == 1:
                    refused[id(part[0])] = error_text(exc, 500)
                    continue
                log.warning(
                    "insert refused, splitting the batch",
                    extra={"rows": len(part), "error": error_text(exc)},
                )
                half = len(part) // 2
                todo += (part[half:], part[:half])  # the first half next
                continue
            if result is None:
                return None
            inserted += result.inserted
            duplicates += result.duplicates
        return StoreResult(inserted, duplicates), refused

    async def _insert_retrying(self, events: list[Event]) -> StoreResult | None:
        """Insert, retrying with backoff while the database is away; a data error is
        raised at once (retrying can't help). None: stopped meanwhile."""
        backoff = Backoff(self.settings.backoff_min, self.settings.backoff_max, self._rng)
        while True:
            started = time.perf_counter()
            try:
                result = await self._insert(events)
            except Exception as exc:
                if is_data_error(exc):
                    raise
                self.metrics.db_failures.inc()  # Postgres away or failing: keep the rows, back off
                self.db_error = error_text(exc)
                log.warning("insert failed, backing off", extra={"error": self.db_error})
                if self._stopping:
                    return None  # unacked: the broker redelivers after we are gone
                await self._sleep(backoff.failed())
                continue
            self.db_error = None
            self.metrics.insert_seconds.observe(time.perf_counter() - started)
            return result

    async def _settle(self, held: Held, refused: dict[int, str]) -> bool:
        """Dead-letter what the message holds that was not stored; True: it can be acked."""
        decoded, message = held.decoded, held.message
        try:
            if decoded.body_error is not None:
                await self._dead_letter(message.body, decoded.body_error, "decode", message)
            for rejected in decoded.rejected:
                body, reason = _alone(rejected.item, rejected.reason, message.body)
                await self._dead_letter(body, reason, "validate", message)
            if refused:
                for event in decoded.events:
                    if (why := refused.get(id(event))) is not None:
                        body = _as_received(message.body, event)
                        await self._dead_letter(body, why, "store", message)
            return True
        except Exception as exc:  # channel gone: redelivery stores nothing twice
            log.warning("dead-letter failed", extra={"error": error_text(exc)})
            return False

    async def _ack(self, batch: list[Held], settled: list[bool]) -> None:
        """Ack the batch's messages: with one `multiple` ack of the last when all of them
        can be acked and they are the channel's only unacked deliveries before it (the
        broker then settles them as one command: less work per message for RabbitMQ and
        for us), else each alone."""
        last = batch[-1].message
        channel = getattr(last, "channel", None)
        whole = (
            len(batch) > 1
            and channel is not None
            and all(settled)
            and not self._left_unacked
            and all(getattr(h.message, "channel", None) is channel for h in batch)
        )
        try:
            if whole:
                await last.ack(multiple=True)
                return
            for held, ok in zip(batch, settled, strict=True):
                if ok:
                    await held.message.ack()
                else:
                    self._left_unacked = True
        except Exception as exc:  # channel gone: redelivery stores nothing twice
            log.warning("ack failed", extra={"error": error_text(exc)})

    async def _dead_letter(
        self, body: bytes, reason: str, stage: str, source: AbstractIncomingMessage
    ) -> None:
        if self.dead_letters is None:
            raise ConnectionError("dead-letter exchange not declared")
        msg = dead_letter_message(body, reason, stage, source, self.topo.writer_queue)
        await self.dead_letters.publish(msg, self.topo.WRITER_DLQ_KEY)
        counter = self.metrics.dead_lettered_by_stage.get(stage)
        (counter or self.metrics.dead_lettered.labels(stage)).inc()
        log.warning(
            "dead-lettered", extra={"reason": reason, "stage": stage, "queue": self.topo.writer_dlq}
        )


def _alone(item: Any, reason: str, whole: bytes) -> tuple[bytes, str]:
    """A rejected item as a batch of its own, or the whole message when the item can't
    be encoded again (nested deeper than orjson writes, though not than it reads): it
    must reach the DLQ either way, or its message could never be acked."""
    try:
        return orjson.dumps([item]), reason
    except orjson.JSONEncodeError:
        return whole, f"{reason} (the whole message: the item can't be re-encoded alone)"


def _as_received(whole: bytes, event: Event) -> bytes:
    """A refused event's envelope as it arrived, alone in a batch (the typed event no
    longer holds the fields its contract ignores); the whole message if it isn't there."""
    try:
        items = orjson.loads(whole)
    except orjson.JSONDecodeError:
        return whole
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("id") == event.id and item.get("type") == event.type:
            return orjson.dumps([item])
    return whole
