"""The alert path is one trace: the consumer span of the metric batch (linked to the
producer of the event), the state change as its child, and the publish span whose
context travels in the notification's AMQP `traceparent`."""

from __future__ import annotations

import uuid

import asyncpg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.alerting.keys import AlertingDeps
from services.alerting.rules import rule_from_doc
from services.alerting.store import upsert_rule
from tests.alerting.conftest import (
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    Tap,
    add_channel,
    engine_of,
    metric_event,
)

PRODUCER_TRACE = "0af7651916cd43dd8448eb211c80319c"
PRODUCER_SPAN = "b7ad6b7169203331"


async def test_metric_to_notification_is_one_trace(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    send_metrics: Send,
    clock: FakeClock,
    notify_tap: Tap,
    prefix: str,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await add_channel(db, "ops")
    rule = rule_from_doc(
        {"name": "lat", "condition": "latency > 1", "channels": ["ops"]},
        tenant=TENANT,
        rule_id=str(uuid.uuid4()),
    )
    await upsert_rule(db, rule)
    client = await start_alerting(deps=AlertingDeps(clock=clock, tracer_provider=provider))
    event = metric_event(
        "latency",
        5,
        {"service": "api"},
        at=clock(),
        trace={"traceparent": f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"},
    )
    await send_metrics(client, [event])
    await engine_of(client).tick()
    (envelope,) = await notify_tap.quiet(client, 1)
    spans = {s.name: s for s in exporter.get_finished_spans()}

    consumer = spans[f"process {prefix}.alerting.metrics"]
    assert consumer.kind == SpanKind.CONSUMER
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.system"] == "rabbitmq"
    assert [f"{link.context.trace_id:032x}" for link in consumer.links] == [PRODUCER_TRACE]

    change = spans["alert firing"]
    assert change.parent is not None and change.parent.span_id == consumer.context.span_id
    assert change.context.trace_id == consumer.context.trace_id
    assert change.attributes is not None and change.attributes["belfry.rule.name"] == "lat"
    assert "evaluate rules" in spans

    publish = next(s for n, s in spans.items() if n.startswith("publish "))
    assert publish.kind == SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == change.context.span_id
    header = str(notify_tap.messages[0].headers["traceparent"])
    assert header.split("-")[1:3] == [
        f"{consumer.context.trace_id:032x}",
        f"{publish.context.span_id:016x}",
    ]
    assert envelope["trace"]["traceparent"].split("-")[1] == f"{consumer.context.trace_id:032x}"
