"""Trace-context helpers shared by producers and consumers: W3C `traceparent` in event
envelopes and AMQP headers, links from a consumer batch to every producing context, and
the messaging/database semantic-convention attribute sets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_W3C = TraceContextTextMapPropagator()


def traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def span_context_of(carrier: Mapping[str, Any] | None) -> SpanContext | None:
    """The remote span context in a `{"traceparent": ...}` carrier, if any and valid."""
    if not carrier:
        return None
    headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in carrier.items()}
    ctx = trace.get_current_span(_W3C.extract(headers)).get_span_context()
    return ctx if ctx.is_valid else None


def links_to(carriers: Iterable[Mapping[str, Any] | None]) -> list[Link]:
    """One link per distinct producing context (the SDK keeps the first 128 by default)."""
    seen: set[tuple[int, int]] = set()
    links = []
    for carrier in carriers:
        ctx = span_context_of(carrier)
        if ctx is not None and (ctx.trace_id, ctx.span_id) not in seen:
            seen.add((ctx.trace_id, ctx.span_id))
            links.append(Link(ctx))
    return links


def inject_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """Add the current span's traceparent/tracestate to AMQP headers (in place)."""
    propagate.inject(headers)
    return headers


def messaging_attributes(
    exchange: str, routing_key: str, operation: str, count: int, queue: str | None = None
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.operation.type": operation,
        "messaging.batch.message_count": count,
    }
    if queue is not None:
        attrs["messaging.destination.subscription.name"] = queue
    return attrs


def postgres_attributes(database_url: str, operation: str, table: str, rows: int) -> dict[str, Any]:
    parts = urlsplit(database_url)
    return {
        "db.system": "postgresql",
        "db.system.name": "postgresql",
        "db.namespace": parts.path.lstrip("/"),
        "db.operation.name": operation,
        "db.collection.name": table,
        "db.query.summary": f"{operation} {table}",
        "db.operation.batch.size": rows,
        "server.address": parts.hostname or "",
        "server.port": parts.port or 5432,
    }
