"""The thin AMQP adapter of one channel type: decode, continue the trace, hand the
notification to the `Deliverer`, then ack — after publishing what comes next.

Each channel type has its own connection, channel and prefetch window, so a slow or
failing Slack never holds up a webhook. A retry is the same body published to the
type's delay queue with a per-message expiration (the delay) and the next attempt
number in `x-belfry-attempt`; when it expires the broker dead-letters it back to the work
queue. A final failure, and a message that is not a valid notification, goes to the
type's dead-letter queue with `x-belfry-reason`. The original is acked only after that
publish is confirmed, so a crash in between redelivers (and the delivery log then skips
what was already delivered) rather than loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanKind

from services.alerting.notify.delivery import Decision, Deliverer
from services.alerting.notify.metrics import NotifyMetrics
from services.alerting.notify.model import Notification
from services.alerting.notify.retry import backoff
from services.alerting.notify.settings import NotifySettings
from shared.contracts import (
    ALERT_NOTIFICATION_V1,
    ALERT_NOTIFICATION_V2,
    ContractError,
    validate_envelope,
)
from shared.deadletter import dead_letter_message
from shared.topology import Topology, declare
from shared.tracing import messaging_attributes, span_context_of, traceparent

log = logging.getLogger("belfry.alerting.notify")

ATTEMPT_HEADER = "x-belfry-attempt"
# Attempts that failed before sending (Postgres away, a bug): retried apart from the
# delivery attempts, up to a limit, then dead-lettered.
HANDLER_RETRIES_HEADER = "x-belfry-handler-retries"
MAX_HANDLER_RETRIES = 30
HANDLER_BACKOFF_MAX = 60.0
TRACE_HEADERS = ("traceparent", "tracestate")
# v2 adds the `acknowledged` status; v1 (firing, resolved) stays what most messages are.
ACCEPTED = (ALERT_NOTIFICATION_V1, ALERT_NOTIFICATION_V2)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _count(headers: dict[str, Any], name: str, default: int) -> int:
    try:
        value = int(_text(headers[name]))
    except (KeyError, ValueError):
        return default
    return max(value, default)


def _message_type(message: AbstractIncomingMessage) -> str:
    """The AMQP type a retry or dead-letter of `message` carries on: its own."""
    return message.type if message.type in ACCEPTED else ALERT_NOTIFICATION_V1


class NotifyConsumer:
    def __init__(
        self,
        channel_type: str,
        topo: Topology,
        deliverer: Deliverer,
        settings: NotifySettings,
        *,
        rng: Any,
        metrics: NotifyMetrics,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.channel_type = channel_type
        self.metrics = metrics
        self.topo = topo
        self.queue = topo.notify_queue(channel_type)
        self.deliverer = deliverer
        self.settings = settings
        self.rng = rng
        self.tracer = tracer
        self.channel: AbstractChannel | None = None
        self.dead_letters: AbstractExchange | None = None
        self.consumer_tag: str | None = None
        self.handled = 0
        self.handler_failures = 0  # messages sent round again because handling failed
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- broker side --------------------------------------------------------------------

    async def on_connect(self, channel: AbstractChannel) -> None:
        exchanges, queues = await declare(channel, self.topo.spec().part(self.queue))
        self.dead_letters = exchanges[self.topo.dead_letter_exchange]
        await channel.set_qos(prefetch_count=self.settings.prefetch)
        self.channel = channel
        self.consumer_tag = await queues[self.queue].consume(self.on_message)

    def on_disconnect(self) -> None:
        # Unacked deliveries of the dead channel come back on the next one.
        self.channel = None
        self.consumer_tag = None

    async def cancel(self) -> None:
        """Stop taking new messages (shutdown); those in hand finish or come back."""
        channel, tag = self.channel, self.consumer_tag
        if channel is None or tag is None or channel.is_closed:
            return
        with contextlib.suppress(Exception):
            queue = await channel.get_queue(self.queue, ensure=False)
            await queue.cancel(tag)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    # --- one message --------------------------------------------------------------------

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._process(message)
        except Exception as exc:  # acking/publishing on a dead channel: redelivered later
            log.warning(
                "notification message not settled",
                extra={"queue": self.queue, "error": f"{type(exc).__name__}: {exc}"},
            )
        finally:
            self.handled += 1
            if task is not None:
                self._tasks.discard(task)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            doc = orjson.loads(message.body)
            env = validate_envelope(doc)
            if env.type not in ACCEPTED:
                raise ContractError(f"{env.type} is not one of {', '.join(ACCEPTED)}")
            if env.data["channel_type"] != self.channel_type:
                raise ContractError(
                    f"channel_type {env.data['channel_type']!r} on the {self.channel_type} queue"
                )
        except (orjson.JSONDecodeError, ContractError) as exc:
            await self._dead_letter(message, f"invalid notification: {exc}", "validate", {})
            await message.ack()
            # Belfry's alerting core made it: Belfry's failure, whoever the tenant.
            self.metrics.count(self.channel_type, "failed", "belfry")
            return
        headers = dict(message.headers or {})
        attempt = _count(headers, ATTEMPT_HEADER, 1)
        carrier = {k: _text(headers[k]) for k in TRACE_HEADERS if k in headers} or {
            k: v for k, v in env.trace.items() if k in TRACE_HEADERS and isinstance(v, str)
        }
        n = Notification.from_envelope(env)
        if self.tracer is None:
            await self._deliver(message, n, doc, attempt, headers, carrier)
            return
        parent_ctx = span_context_of(carrier)
        parent = trace.set_span_in_context(NonRecordingSpan(parent_ctx)) if parent_ctx else None
        attributes = messaging_attributes(
            self.topo.notify_exchange, self.channel_type, "process", 1, queue=self.queue
        )
        attributes.update(
            {
                "messaging.message.id": n.id,
                "belfry.notification_id": n.id,
                "belfry.attempt": attempt,
                "belfry.tenant": n.tenant,
                "belfry.rule_id": n.rule_id,
            }
        )
        with self.tracer.start_as_current_span(
            f"process {self.queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            decision = await self._deliver(message, n, doc, attempt, headers, carrier)
            if decision is not None:
                span.set_attribute("belfry.outcome", decision.outcome)

    async def _deliver(
        self,
        message: AbstractIncomingMessage,
        n: Notification,
        doc: dict[str, Any],
        attempt: int,
        headers: dict[str, Any],
        carrier: dict[str, str],
    ) -> Decision | None:
        try:
            decision = await self.deliverer.handle(n, doc, attempt, carrier)
        except Exception as exc:
            await self._handler_failed(message, headers, carrier, exc)
            return None
        if decision.outcome == "retried":
            await self._publish_retry(message, attempt + 1, decision.delay or 0.0, headers, carrier)
        elif decision.outcome in ("failed", "refused"):
            extra = {"x-belfry-attempts": attempt, "x-belfry-outcome": decision.outcome}
            await self._dead_letter(message, decision.error or decision.outcome, "deliver", extra)
        await message.ack()
        return decision

    async def _handler_failed(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        carrier: dict[str, str],
        exc: Exception,
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"[:500]
        self.handler_failures += 1
        retries = _count(headers, HANDLER_RETRIES_HEADER, 0) + 1
        log.warning(
            "notification handler failed",
            extra={"queue": self.queue, "error": error, "retries": retries},
        )
        # Database, broker or a bug: Belfry's failure, whoever's channel it was.
        self.metrics.count(self.channel_type, "error", "belfry")
        if retries > MAX_HANDLER_RETRIES:
            await self._dead_letter(message, f"handler kept failing: {error}", "handler", {})
            self.metrics.count(self.channel_type, "failed", "belfry")
        else:
            delay = min(backoff(retries, self.settings, self.rng), HANDLER_BACKOFF_MAX)
            attempt = _count(headers, ATTEMPT_HEADER, 1)
            extra = {HANDLER_RETRIES_HEADER: retries}
            await self._publish_retry(message, attempt, delay, headers, carrier, extra)
        await message.ack()

    def _trace_headers(self, carrier: dict[str, str]) -> dict[str, str]:
        """The current consumer span's context (so the next attempt continues this
        trace), or the incoming one when tracing is off here."""
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            return {"traceparent": traceparent(ctx)}
        return dict(carrier)

    async def _publish_retry(
        self,
        message: AbstractIncomingMessage,
        attempt: int,
        delay: float,
        headers: dict[str, Any],
        carrier: dict[str, str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        channel = self.channel
        if channel is None or channel.is_closed:
            raise ConnectionError("channel closed")
        # Our own headers travel on (replay marker); the counters are set afresh.
        counters = (ATTEMPT_HEADER, HANDLER_RETRIES_HEADER)
        out: dict[str, Any] = {
            k: v for k, v in headers.items() if k.startswith("x-belfry-") and k not in counters
        }
        out.update(self._trace_headers(carrier))
        out[ATTEMPT_HEADER] = attempt
        out.update(extra or {})
        delay_ms = max(1, round(delay * 1000))
        retry = aio_pika.Message(
            message.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=_message_type(message),
            message_id=message.message_id,
            headers=out,
            expiration=delay_ms / 1000,
        )
        await channel.default_exchange.publish(
            retry, routing_key=self.topo.delay_queue(self.channel_type, delay_ms)
        )

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        reason: str,
        stage: str,
        extra: dict[str, Any],
    ) -> None:
        if self.dead_letters is None:
            raise ConnectionError("dead-letter exchange not declared")
        await self.dead_letters.publish(
            dead_letter_message(
                message.body,
                reason,
                stage,
                message,
                self.queue,
                message_type=_message_type(message),
                extra=extra,
            ),
            self.topo.notify_dlq_key(self.channel_type),
        )
        log.warning(
            "notification dead-lettered",
            extra={"queue": self.topo.notify_dlq(self.channel_type), "reason": reason[:300]},
        )
