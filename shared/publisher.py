"""Micro-batching publisher: many events per AMQP message, many messages in flight.

One AMQP message per hit caps a service at ~4k hits/s; 50-200 events per message under
publisher confirms reach 140k+ events/s (DESIGN.md). `submit()` adds an event to the open
batch and returns a future shared by every event of that batch, resolved when the batch
is confirmed by the broker (PUBLISHED), fsync'd to the spool (SPOOLED) or neither
(DROPPED: broker away and spool full).

Batching adapts to load: with fewer than `eager_in_flight` batches awaiting confirms the
open batch is flushed on the next loop turn (low latency when idle); otherwise it fills
up until a confirm comes back, `max_batch` events or `max_delay` seconds, whichever comes
first. The default, one eager batch, measured best on the 2-core bench (wrk -c64,
`bench/README.md`): as many requests/s as 2 or more, with 32 instead of 23 events per
message and ~12% less CPU per hit across ingest, RabbitMQ and the writer, because the
broker's cost is per message.

While anything is spooled, new batches are spooled too, so replay keeps arrival order.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from shared.contracts import BATCH_V1, encode_batch
from shared.ids import new_event_id
from shared.spool import Spool
from shared.tasks import stop_task
from shared.tracing import inject_headers, links_to, messaging_attributes, traceparent

log = logging.getLogger("belfry.publisher")


class Outcome(enum.Enum):
    PUBLISHED = "published"
    SPOOLED = "spooled"
    DROPPED = "dropped"


class PublishObserver:
    """Hooks for metrics; the default does nothing."""

    def batch_done(self, size: int, outcome: Outcome, seconds: float) -> None:
        pass

    def replayed(self, records: int) -> None:
        pass


def _resolve(fut: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


class BatchPublisher:
    def __init__(
        self,
        exchange: Callable[[], AbstractExchange | None],
        routing_key: str,
        spool: Spool,
        *,
        app_id: str,
        max_batch: int = 200,
        max_delay: float = 0.005,
        eager_in_flight: int = 1,
        max_in_flight: int = 64,
        confirm_timeout: float = 2.0,
        observer: PublishObserver | None = None,
        tracer: trace.Tracer | None = None,
        exchange_name: str = "",
    ) -> None:
        self._tracer = tracer
        self._exchange_name = exchange_name
        # With tracing on: the request span of each buffered event, in buffer order.
        self._spans: list[trace.Span] = []
        self._exchange = exchange
        self._routing_key = routing_key
        self.spool = spool
        self._app_id = app_id
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._eager = eager_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._confirm_timeout = confirm_timeout
        self._observer = observer or PublishObserver()
        self._buffer: list[dict[str, Any]] = []
        self._future: asyncio.Future[Outcome] | None = None
        self._timer: asyncio.Handle | None = None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._replay_task: asyncio.Task[None] | None = None
        self._closed = False

    # --- accepting events -------------------------------------------------------------

    def submit(self, event: dict[str, Any]) -> asyncio.Future[Outcome]:
        """Queue one envelope; the returned future resolves with its batch's outcome."""
        if self._closed:
            raise RuntimeError("publisher is closed")
        fut = self._future
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._future = loop.create_future()
            if self._in_flight < self._eager:
                self._timer = loop.call_soon(self.flush)
            else:
                self._timer = loop.call_later(self._max_delay, self.flush)
        if self._tracer is not None:
            span = trace.get_current_span()
            if span.is_recording():  # unsampled requests have no trace to link to
                # The event carries its request's context so the consumer can link to it.
                event["trace"] = {"traceparent": traceparent(span.get_span_context())}
                self._spans.append(span)
        self._buffer.append(event)
        if len(self._buffer) >= self._max_batch:
            self.flush()
        return fut

    def submit_many(self, events: list[dict[str, Any]]) -> list[asyncio.Future[Outcome]]:
        return [self.submit(e) for e in events]

    def flush(self) -> None:
        """Send the open batch now (no-op when empty)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer or self._future is None:
            return
        batch, fut, spans = self._buffer, self._future, self._spans
        self._buffer, self._future, self._spans = [], None, []
        self._in_flight += 1
        # A producer span only for batches with a sampled hit: at 1 % sampling most
        # batches carry none, and an unlinked root span would trace nothing useful.
        coro = self._traced_send(batch, fut, spans) if spans else self._send(batch, fut)
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- delivering batches -----------------------------------------------------------

    def _message(self, body: bytes, count: int) -> aio_pika.Message:
        # count < 0: a replayed spool record, whose size we don't parse again.
        headers: dict[str, Any] = (
            {"x-belfry-events": count} if count >= 0 else {"x-belfry-replayed": True}
        )
        if self._tracer is not None:
            inject_headers(headers)  # the producer span, for consumers that continue it
        return aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=new_event_id(),
            type=BATCH_V1,
            app_id=self._app_id,
            headers=headers,
        )

    async def _publish(self, body: bytes, count: int) -> None:
        exchange = self._exchange()
        if exchange is None:
            raise ConnectionError("broker unavailable")
        # asyncio.timeout, not wait_for: no extra task per batch, so one event-loop turn
        # less on the way out and on the way back (and aiormq can roll back a publish
        # cancelled before it was written, in its own task).
        async with asyncio.timeout(self._confirm_timeout):
            await exchange.publish(self._message(body, count), self._routing_key)

    async def _send(self, batch: list[dict[str, Any]], fut: asyncio.Future[Outcome]) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome.DROPPED
        try:
            async with self._slots:
                body = encode_batch(batch)
                outcome = await self._deliver(body, len(batch))
        except Exception:  # never leave a request hanging
            log.exception("batch delivery failed")
        finally:
            self._in_flight -= 1
            # Confirms came back: whatever queued meanwhile can go without waiting, and it
            # goes first. This batch's requests are answered on the next loop turn, after
            # the next batch is on its way to the broker: answering them first would
            # hold that publish behind every one of their responses (~0.5 ms at load).
            if self._buffer and self._in_flight < self._eager:
                self.flush()
            asyncio.get_running_loop().call_soon(_resolve, fut, outcome)
            self._observer.batch_done(len(batch), outcome, time.perf_counter() - started)
        return outcome

    async def _traced_send(
        self, batch: list[dict[str, Any]], fut: asyncio.Future[Outcome], spans: list[trace.Span]
    ) -> None:
        """`_send` inside a PRODUCER span linked to each event's request; a spooled batch
        also marks every request span, so a hit's own trace shows where it went."""
        assert self._tracer is not None
        links = [Link(s.get_span_context()) for s in spans]
        # A child of the first sampled request (so sampling follows the hits and that
        # hit's trace shows its publish), linked to all of them.
        parent = trace.set_span_in_context(spans[0]) if spans else None
        with self._tracer.start_as_current_span(
            f"publish {self._exchange_name}",
            context=parent,
            kind=SpanKind.PRODUCER,
            links=links,
            attributes=messaging_attributes(
                self._exchange_name, self._routing_key, "send", len(batch)
            ),
        ) as span:
            outcome = await self._send(batch, fut)
            span.set_attribute("belfry.publish.outcome", outcome.value)
            if outcome is not Outcome.PUBLISHED:
                span.add_event(f"batch {outcome.value}")
                for request_span in spans:
                    if request_span.is_recording():
                        request_span.add_event(f"hit {outcome.value}")
            if outcome is Outcome.DROPPED:
                span.set_status(Status(StatusCode.ERROR, "broker unavailable and spool full"))

    async def _deliver(self, body: bytes, count: int) -> Outcome:
        direct = self._exchange() is not None and not self.spool.pending()
        if direct:
            try:
                await self._publish(body, count)
                return Outcome.PUBLISHED
            except Exception as exc:
                log.warning(
                    "publish failed, spooling", extra={"error": f"{type(exc).__name__}: {exc}"}
                )
        if await self.spool.append(body):
            self.kick_replay()
            return Outcome.SPOOLED
        if not direct and self._exchange() is not None:
            # Spool full while it replays: keeping the hit beats keeping arrival order.
            try:
                await self._publish(body, count)
                return Outcome.PUBLISHED
            except Exception:
                pass
        log.error("broker unavailable and spool full: batch dropped", extra={"events": count})
        return Outcome.DROPPED

    # --- spool replay -----------------------------------------------------------------

    def kick_replay(self) -> None:
        """Start draining the spool if it has records and nothing drains it yet."""
        if self._closed or self._exchange() is None or not self.spool.pending():
            return
        if self._replay_task is None or self._replay_task.done():
            self._replay_task = asyncio.create_task(self._replay())

    async def _replay(self) -> None:
        async def publish(body: bytes) -> None:
            if self._tracer is None:
                await self._publish(body, -1)
                return
            # A replayed batch links back to the requests that spooled it.
            try:
                carriers = [e.get("trace") for e in orjson.loads(body) if isinstance(e, dict)]
            except orjson.JSONDecodeError:
                carriers = []
            with self._tracer.start_as_current_span(
                f"publish {self._exchange_name} (spool replay)",
                kind=SpanKind.PRODUCER,
                links=links_to(carriers),
                attributes=messaging_attributes(
                    self._exchange_name, self._routing_key, "send", len(carriers)
                ),
            ):
                await self._publish(body, -1)

        try:
            count = await self.spool.drain(publish)
            if count:
                log.info("spool replayed", extra={"records": count})
                self._observer.replayed(count)
        except Exception as exc:
            # The broker went away again; the on-connect hook kicks the next attempt.
            log.warning("spool replay interrupted", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def close(self, timeout: float = 10.0) -> None:
        """Flush the open batch and wait for every in-flight confirm (SIGTERM drain)."""
        self.flush()
        self._closed = True
        pending = list(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
            await asyncio.sleep(0)  # their futures resolve one loop turn after they end
        await stop_task(self._replay_task)
