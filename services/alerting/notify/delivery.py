"""The delivery handler: one attempt of one notification, and what happens next.

`Deliverer.handle(notification, envelope, attempt, ...)` is pure of AMQP: it records the
notification, skips one already finished (a redelivered message never sends twice),
reads the channel, sends inside a client span, records the attempt, and returns a
`Decision` (delivered, retry after a delay, failed, refused, skipped) that the consumer
turns into acks, delay-queue and dead-letter messages.

A `resolved` goes to a channel only for the alerts whose `firing` (same episode) was
delivered on that channel: "announced" is per channel and means delivered. Alerts whose
firing failed or was refused there are left out; when none is left the notification is
`skipped`; while a firing is still on its way (retrying), the resolved waits for it.
An `acknowledged` (alert.notification.v2) follows the same rule, and is `skipped` on a
channel type without an acknowledge action (the outbox makes none for those).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.alerting.notify.channels import (
    ACKNOWLEDGING_TYPES,
    Outcome,
    SendContext,
    alertmanager,
    email,
    pagerduty,
    slack,
    webhook,
)
from services.alerting.notify.channels import service_log as log_channel
from services.alerting.notify.config import redact_channel_config, validate_channel_config
from services.alerting.notify.metrics import NotifyMetrics, owner_of
from services.alerting.notify.model import Notification
from services.alerting.notify.retry import retry_delay
from services.alerting.notify.store import TERMINAL, DeliveryStore

log = logging.getLogger("belfry.alerting.notify")

Sender = Callable[[Notification, dict[str, Any], SendContext], Awaitable[Outcome]]
SENDERS: dict[str, Sender] = {
    "webhook": webhook.send,
    "slack": slack.send,
    "email": email.send,
    "alertmanager": alertmanager.send,
    "pagerduty": pagerduty.send,
    "log": log_channel.send,
}


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # delivered | retried | failed | refused | skipped
    error: str | None = None
    delay: float | None = None  # seconds before the next attempt (retried only)


class Deliverer:
    def __init__(
        self,
        channel_type: str,
        store: DeliveryStore,
        context: SendContext,
        rng: Any,
        tracer: trace.Tracer | None = None,
        *,
        metrics: NotifyMetrics,
    ) -> None:
        self.channel_type = channel_type
        self.metrics = metrics
        self._delivery_seconds = metrics.delivery_seconds.labels(channel_type)
        self.store = store
        self.context = context
        self.settings = context.settings
        self.rng = rng
        self.tracer = tracer
        self.send = SENDERS[channel_type]

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.context.clock(), UTC)

    async def handle(
        self,
        n: Notification,
        envelope: dict[str, Any],
        attempt: int,
        incoming_trace: dict[str, str],
    ) -> Decision:
        status = await self.store.begin(n, envelope)
        if status in TERMINAL:
            log.info(
                "notification already finished, not sent again",
                extra={"notification_id": n.id, "status": status},
            )
            return Decision("skipped")
        channel = await self.store.channel(n.tenant, n.channel)
        problem = None
        if channel is None:
            problem = f"channel {n.channel!r} does not exist"
        elif not channel.enabled:
            problem = f"channel {n.channel!r} is disabled"
        elif channel.type != n.channel_type:
            problem = f"channel {n.channel!r} is of type {channel.type}, not {n.channel_type}"
        else:
            errors = validate_channel_config(channel.type, channel.config)
            if errors:
                problem = f"channel {n.channel!r} has an invalid config: " + "; ".join(
                    f"{k}: {v}" for k, v in sorted(errors.items())
                )
        if problem is not None or channel is None:
            return await self._finish(n, attempt, Outcome(False, error=problem), 0.0, 0.0)
        if n.status == "acknowledged" and self.channel_type not in ACKNOWLEDGING_TYPES:
            reason = f"{self.channel_type} channels have no acknowledge action"
            return await self._skip(n, reason)
        if n.status in ("resolved", "acknowledged"):
            announced = await self._announced(n, attempt)
            if isinstance(announced, Decision):
                return announced
            n = announced

        at = self.context.clock()
        started = time.perf_counter()
        outcome = await self._send_traced(n, channel.config, incoming_trace)
        elapsed = time.perf_counter() - started
        self._delivery_seconds.observe(elapsed)
        return await self._finish(n, attempt, outcome, at, elapsed)

    async def _announced(self, n: Notification, attempt: int) -> Notification | Decision:
        """The resolved (or acknowledged) notification cut to the alerts this channel got
        the firing of; or the decision when there is nothing to send yet (a firing still
        retrying) or at all (skipped)."""
        delivered, pending = await self.store.firings(n)
        if pending:
            wait = Outcome(
                False,
                error=f"waiting for the firing of {len(pending)} alert(s) to be delivered first",
                retryable=True,
            )
            return await self._finish(n, attempt, wait, 0.0, 0.0)
        kept = tuple(a for a in n.alerts if a.fingerprint in delivered)
        if kept:
            return replace(n, alerts=kept)
        what = "resolve" if n.status == "resolved" else "acknowledge"
        reason = f"no firing of these alerts was delivered on this channel; nothing to {what}"
        return await self._skip(n, reason)

    async def _skip(self, n: Notification, reason: str) -> Decision:
        """Nothing to send on this channel: the delivery ends `skipped`, with the reason."""
        await self.store.skip(n.id, reason, self._now())
        self.metrics.count(self.channel_type, "skipped", owner_of(n.tenant))
        log.info(
            f"{n.status} notification skipped",
            extra={
                "notification_id": n.id,
                "channel": n.channel,
                "tenant": n.tenant,
                "reason": reason,
            },
        )
        return Decision("skipped", reason)

    async def _send_traced(
        self, n: Notification, config: dict[str, Any], incoming_trace: dict[str, str]
    ) -> Outcome:
        if self.tracer is None:
            # Tracing off here: pass the producer's context on, so a subscriber still
            # continues the alert's trace.
            return await self.send(n, config, replace(self.context, trace_headers=incoming_trace))
        name, attributes = self._client_span(config)
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            headers: dict[str, str] = {}
            propagate.inject(headers)
            outcome = await self.send(n, config, replace(self.context, trace_headers=headers))
            if outcome.status_code is not None:
                key = "smtp.response.code" if self.channel_type == "email" else None
                span.set_attribute(key or "http.response.status_code", outcome.status_code)
            if not outcome.delivered:
                span.set_status(Status(StatusCode.ERROR, outcome.error or "failed"))
                if outcome.refused:
                    span.set_attribute("error.type", "egress_refused")
            return outcome

    def _client_span(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.channel_type == "log":
            return "log write", {"belfry.channel_type": "log"}
        if self.channel_type == "email":
            return "smtp send", {
                "server.address": str(config.get("host", "")),
                "server.port": int(config.get("port") or 0),
                "belfry.channel_type": "email",
            }
        url = str(config.get("url", ""))
        if self.channel_type == "pagerduty":
            url = url or self.settings.pagerduty_events_url
        if self.channel_type == "alertmanager":
            url = url.rstrip("/") + "/api/v2/alerts"
        try:
            parts = urlsplit(url)
            host, port = (
                parts.hostname or "",
                parts.port or (443 if parts.scheme == "https" else 80),
            )
        except ValueError:
            host, port = "", 0
        shown = redact_channel_config(self.channel_type, {"url": url})["url"]
        return "POST", {
            "http.request.method": "POST",
            "url.full": shown,
            "server.address": host,
            "server.port": port,
            "belfry.channel_type": self.channel_type,
        }

    async def _finish(
        self, n: Notification, attempt: int, outcome: Outcome, at: float, elapsed: float
    ) -> Decision:
        if outcome.delivered:
            result = Decision("delivered")
            status = "delivered"
        elif outcome.refused:
            result = Decision("refused", outcome.error)
            status = "refused"
        elif outcome.retryable and attempt < self.settings.max_attempts:
            delay = retry_delay(attempt, outcome.retry_after, self.settings, self.rng)
            result = Decision("retried", outcome.error, delay)
            status = "pending"
        else:
            error = outcome.error or "failed"
            if outcome.retryable:
                error = f"{error} (gave up after {attempt} attempts)"
            result = Decision("failed", error)
            status = "failed"
        when = datetime.fromtimestamp(at, UTC) if at else self._now()
        await self.store.record(
            n.id,
            attempt=attempt,
            at=when,
            status_code=outcome.status_code,
            latency_ms=round(elapsed * 1000, 3),
            error=result.error,
            outcome=result.outcome,
            status=status,
        )
        self.metrics.count(self.channel_type, result.outcome, owner_of(n.tenant))
        level = logging.INFO if result.outcome in ("delivered", "retried") else logging.WARNING
        log.log(
            level,
            f"notification {result.outcome}",
            extra={
                "notification_id": n.id,
                "tenant": n.tenant,
                "channel": n.channel,
                "channel_type": n.channel_type,
                "rule": n.rule_id,
                "attempt": attempt,
                "status_code": outcome.status_code,
                "error": result.error,
                "delay": result.delay,
            },
        )
        return result
