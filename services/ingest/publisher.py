"""Micro-batching publisher: many events per AMQP message, many messages in flight.

One AMQP message per hit caps a service at ~4k hits/s; 50-200 events per message under
publisher confirms reach 140k+ events/s on this machine. `submit()` adds an event to the open
batch and returns a future shared by every event of that batch, resolved when the batch
is confirmed by the broker (PUBLISHED), fsync'd to the spool (SPOOLED) or neither
(DROPPED: broker away and spool full).

Batching adapts to load: with fewer than `eager_in_flight` batches awaiting confirms the
open batch is flushed on the next loop turn (low latency when idle); otherwise it fills
up until a confirm comes back, `max_batch` events or `max_delay` seconds, whichever comes
first. The default, one eager batch, measured best on the 2-core bench (wrk -c64,
`bench/README.md`): as many requests/s as 2 or more, with 32 instead of 23 events per
message and ~12% less CPU per hit across ingest, RabbitMQ and the writer, because the
broker's cost is per message. Re-measured 2026-12-01 with 1, 2, 4 and 8 alternating every
0.5 s inside one ingest process under wrk -c64 (so the shared machine's noise hits each
alike): 1 answered as many or more (4,980 requests/s against 4,157-4,521 at load average
~5; all within 5% in another run), with 30-34 events per message against 21-27 and no more
ingest CPU per hit; at -c512 all were within noise. A batch costs ingest ~250 us of CPU
however small (a socket write, the confirm's read, aio-pika), so more eager batches pay
more than the shorter wait wins; measured again with the fast path, 2 gave 23 instead of
31 events per message and fewer requests/s.

Batches go to `exchange()`: the publish lane's (publishlane.py, the default) or aio-pika's.
When a confirm comes back with a batch waiting, `_run` sends that batch from the same
task in the same loop turn; with the lane that puts it on the wire one turn after the
Basic.Ack was read.

While anything is spooled, new batches are spooled too, so replay keeps arrival order.
In that spool mode the open batch always fills for `max_delay` (a spool append is an
fsync, not a broker round trip: flushing eagerly there made one-event batches). Replay
runs at broker speed: each spool segment goes out as few large messages (spooled
batch.v1 arrays merged up to `replay_message_bytes`), many in flight under confirms.
When what is left is one small segment, new batches wait for it (milliseconds) instead
of spooling behind it, then publish directly: so a spool drains while load continues,
and order is kept - every hit accepted before another is published before it.

Readiness (`check()`): confirms must come back within `confirm_timeout`. A real confirm
that recent proves it; otherwise (idle, or after a confirm timed out) an unroutable probe
message is published to the exchange and must be confirmed in time.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import aio_pika
import orjson
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from services.ingest.spool import Spool
from shared.contracts import BATCH_V1, encode_batch
from shared.failures import LogThrottle, error_text
from shared.ids import new_event_id
from shared.tasks import stop_task
from shared.tracing import inject_headers, links_to, messaging_attributes, traceparent

log = logging.getLogger("belfry.publisher")

# Routed nowhere (the hits exchange binds `hit.#`): the broker confirms and drops it.
PROBE_ROUTING_KEY = "belfry.readiness-probe"


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


class Exchange(Protocol):
    """Where batches go: aio-pika's exchange, or the publish lane's (publishlane.py)."""

    async def publish(
        self, message: aio_pika.Message, routing_key: str, *, mandatory: bool = ...
    ) -> Any: ...


class _Current:
    """`submit`'s default: the span current when it is called."""


CURRENT = _Current()


def _resolve(fut: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


class BatchPublisher:
    def __init__(
        self,
        exchange: Callable[[], Exchange | None],
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
        replay_message_bytes: int = 128 << 10,
        replay_in_flight: int = 16,
        clock: Callable[[], float] = time.monotonic,
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
        self._replay_bytes = replay_message_bytes
        self._replay_in_flight = replay_in_flight
        # True after a batch went to the spool, False after one was published directly.
        self._spooling = False
        # Set while replay sends the spool's last segment: new batches wait for it.
        self._cutover: asyncio.Future[None] | None = None
        self._clock = clock
        self._last_confirm = float("-inf")
        self._stalled = False  # a confirm timed out and none came back since
        self._probe: asyncio.Task[str | None] | None = None
        self._warn_throttle = LogThrottle()
        self._drop_throttle = LogThrottle()

    # --- accepting events -------------------------------------------------------------

    def submit(
        self, event: dict[str, Any], span: trace.Span | _Current | None = CURRENT
    ) -> asyncio.Future[Outcome]:
        """Queue one envelope; the returned future resolves with its batch's outcome.
        `span`: the request's span, when the caller knows it (the pixel fast path: None,
        or a sampled one); by default the current span."""
        if self._closed:
            raise RuntimeError("publisher is closed")
        fut = self._future
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._future = loop.create_future()
            if self._in_flight < self._eager and not self._spooling:
                self._timer = loop.call_soon(self.flush)
            else:
                self._timer = loop.call_later(self._max_delay, self.flush)
        if self._tracer is not None and span is not None:
            if isinstance(span, _Current):
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
        taken = self._take()
        if taken is None:
            return
        task = asyncio.create_task(self._run(*taken))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(
        self,
    ) -> tuple[list[dict[str, Any]], asyncio.Future[Outcome], list[trace.Span]] | None:
        """The open batch, now in flight; None when there is none."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer or self._future is None:
            return None
        batch, fut, spans = self._buffer, self._future, self._spans
        self._buffer, self._future, self._spans = [], None, []
        self._in_flight += 1
        return batch, fut, spans

    async def _run(
        self, batch: list[dict[str, Any]], fut: asyncio.Future[Outcome], spans: list[trace.Span]
    ) -> None:
        """Deliver a batch; then, when another waits as its confirm comes back, that one
        from this same task in the same loop turn (a new task would start a turn later,
        and at load a turn holds dozens of requests' work)."""
        while True:
            # A producer span only for batches with a sampled hit: at 1 % sampling most
            # batches carry none, and an unlinked root span would trace nothing useful.
            if spans:
                await self._traced_send(batch, fut, spans)
            else:
                await self._send(batch, fut)
            if not self._buffer or self._in_flight >= self._eager or self._spooling:
                return
            taken = self._take()
            if taken is None:
                return
            batch, fut, spans = taken

    # --- delivering batches -----------------------------------------------------------

    def _message(self, body: bytes, count: int) -> aio_pika.Message:
        # count < 0: a replayed spool record, whose size we don't parse again.
        headers: dict[str, Any] = (
            {"x-belfry-events": count} if count >= 0 else {"x-belfry-replayed": True}
        )
        if self._tracer is not None and trace.get_current_span().is_recording():
            # The producer span, for consumers that continue it. Only a sampled batch has
            # one: an unsampled context would give the writer a link to nothing.
            inject_headers(headers)
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
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await exchange.publish(self._message(body, count), self._routing_key)
        except TimeoutError:
            self._stalled = True
            raise TimeoutError(f"no publisher confirm within {self._confirm_timeout}s") from None
        self._stalled = False
        self._last_confirm = self._clock()

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
            # This batch's requests are answered on the next loop turn, after `_run` has
            # sent whatever queued meanwhile on its way to the broker: answering them
            # first would hold that publish behind all their responses (~0.5 ms at load).
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
        if self._cutover is not None:
            # Replay is sending the spool's last records: go right after them.
            await asyncio.shield(self._cutover)
        direct = self._exchange() is not None and not self.spool.pending()
        if direct:
            try:
                await self._publish(body, count)
                self._spooling = False
                return Outcome.PUBLISHED
            except Exception as exc:
                self._warn("publish failed, spooling", exc)
        self._spooling = True
        if await self.spool.append(body):
            self.kick_replay()
            return Outcome.SPOOLED
        if not direct and self._exchange() is not None:
            # Spool refused while it replays: keeping the hit beats keeping arrival order.
            try:
                await self._publish(body, count)
                return Outcome.PUBLISHED
            except Exception as exc:
                self._warn("publish after spool refusal failed", exc)
        self._log_dropped(count, direct)
        return Outcome.DROPPED

    def _warn(self, message: str, exc: BaseException) -> None:
        suppressed = self._warn_throttle.allow()  # an outage fails every batch
        if suppressed is not None:
            log.warning(message, extra={"error": error_text(exc), "suppressed": suppressed})

    def _log_dropped(self, count: int, tried_broker: bool) -> None:
        suppressed = self._drop_throttle.allow()
        if suppressed is not None:
            broker = "broker not confirming" if tried_broker else "broker unavailable"
            log.error(
                f"batch dropped: {broker} and {self.spool.refused or 'spool refused it'}",
                extra={"events": count, "suppressed_batches": suppressed},
            )

    # --- spool replay -----------------------------------------------------------------

    def kick_replay(self) -> None:
        """Start draining the spool if it has records and nothing drains it yet."""
        if self._closed or self._exchange() is None or not self.spool.pending():
            return
        if self._replay_task is None or self._replay_task.done():
            self._replay_task = asyncio.create_task(self._replay())

    async def _replay(self) -> None:
        while True:
            try:
                count = await self.spool.drain(self._replay_records, self._hold_new_batches)
                if count:
                    log.info("spool replayed", extra={"records": count})
                return
            except Exception as exc:
                log.warning("spool replay interrupted", extra={"error": error_text(exc)})
            finally:
                cutover, self._cutover = self._cutover, None
                if cutover is not None:
                    cutover.set_result(None)
                self._spooling = self.spool.pending()
            if self._closed or self._exchange() is None:
                return  # the broker went away: its on-available hook kicks the next replay
            # Connected but not confirming (frozen, blocked): try again, even if no new
            # batch comes to kick it.
            await asyncio.sleep(self._confirm_timeout)

    def _hold_new_batches(self) -> None:
        # Not while confirms time out (frozen broker): new batches would wait a confirm
        # timeout per replay attempt instead of being spooled at once.
        if self._cutover is None and not self._stalled:
            self._cutover = asyncio.get_running_loop().create_future()

    async def _replay_records(self, records: list[bytes]) -> None:
        """Publish one spool segment's records, merged into few messages, up to
        `replay_in_flight` awaiting confirms; returns when all are confirmed."""
        window = asyncio.Semaphore(self._replay_in_flight)

        async def one(body: bytes, records: int) -> None:
            try:
                await self._publish_replayed(body)
            finally:
                window.release()
            self._observer.replayed(records)  # counted as confirmed, not per drain

        try:
            async with asyncio.TaskGroup() as group:
                for body, n in merge_batches(records, self._replay_bytes):
                    await window.acquire()
                    group.create_task(one(body, n))
        except ExceptionGroup as failed:  # the first failure says why
            raise failed.exceptions[0] from None

    async def _publish_replayed(self, body: bytes) -> None:
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

    # --- readiness --------------------------------------------------------------------

    async def check(self) -> str | None:
        """None while confirms come back within `confirm_timeout`, else why not. The
        broker's own check reports a broker that is away; this one, one that is there
        but does not confirm (frozen, blocked by an alarm)."""
        if self._exchange() is None:
            return None
        recent = self._clock() - self._last_confirm < self._confirm_timeout
        if recent and not self._stalled:
            return None
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_confirm())
        return await asyncio.shield(self._probe)

    async def _probe_confirm(self) -> str | None:
        exchange = self._exchange()
        if exchange is None:
            return None
        probe = aio_pika.Message(b"", message_id=new_event_id(), app_id=self._app_id)
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await exchange.publish(probe, PROBE_ROUTING_KEY, mandatory=False)
        except TimeoutError:
            return f"broker not confirming: no publisher confirm within {self._confirm_timeout}s"
        except Exception as exc:
            return f"broker not confirming: {error_text(exc)}"
        self._stalled = False
        self._last_confirm = self._clock()
        return None

    async def close(self, timeout: float = 10.0) -> None:
        """Flush the open batch and wait for every in-flight confirm (SIGTERM drain)."""
        self.flush()
        self._closed = True
        pending = list(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
            await asyncio.sleep(0)  # their futures resolve one loop turn after they end
        await stop_task(self._replay_task)
        await stop_task(self._probe)


def merge_batches(records: list[bytes], limit: int) -> Iterator[tuple[bytes, int]]:
    """Spooled batch.v1 bodies (JSON arrays) joined into arrays of up to `limit` bytes,
    in order, each with how many records it holds; no JSON is parsed. A record that is
    not a non-empty array goes out alone, as it was spooled, for the writer to judge."""
    parts: list[bytes] = []
    size = 2
    for body in records:
        if len(body) < 3 or body[:1] != b"[" or body[-1:] != b"]":
            if parts:
                yield b"[" + b",".join(parts) + b"]", len(parts)
                parts, size = [], 2
            yield body, 1
            continue
        inner = body[1:-1]
        if parts and size + len(inner) + 1 > limit:
            yield b"[" + b",".join(parts) + b"]", len(parts)
            parts, size = [], 2
        parts.append(inner)
        size += len(inner) + 1
    if parts:
        yield b"[" + b",".join(parts) + b"]", len(parts)
