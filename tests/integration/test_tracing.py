"""One trace per hit in an OTLP receiver: ingest's request → producer → writer's consumer
(linked) → database insert, with semantic-convention attributes, and the trace id in
the hit's log lines. The services run as real processes configured by OTEL_* only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from services.ingest.keys import IngestDeps
from tests.conftest import start_broker_proxy
from tests.integration.helpers import broker_up, ready, rows
from tests.support.otlp import OtlpReceiver, SpanRecord


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpReceiver]:
    receiver = await OtlpReceiver().start()
    yield receiver
    await receiver.stop()


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s instead of 5 s
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "LOG_LEVEL": "DEBUG",
    }


async def test_a_pixel_hit_is_one_connected_trace_across_ingest_and_writer(
    spawn: Callable[..., Any], otlp: OtlpReceiver, db: asyncpg.Connection, prefix: str
) -> None:
    await spawn("writer", **otel_env(otlp))
    ingest = await spawn("ingest", **otel_env(otlp))
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{ingest.url}/acme/pixel/traced-1.gif") as resp,
    ):
        assert resp.status == 200
    await rows(db, 1)

    def is_request(s: SpanRecord) -> bool:
        return s.kind == "server" and s.attributes.get("belfry.email_id") == "traced-1"

    (request,) = await otlp.wait_for(is_request)
    assert request.service == "belfry-ingest"
    assert request.resource["deployment.environment"] == "test"
    assert request.name == "GET /{tenant}/pixel/{email_id}.gif"
    assert request.attributes["http.request.method"] == "GET"
    assert request.attributes["http.route"] == "/{tenant}/pixel/{email_id}.gif"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["belfry.tenant"] == "acme"

    def produced_it(s: SpanRecord) -> bool:
        return s.kind == "producer" and (request.trace_id, request.span_id) in s.links

    (producer,) = await otlp.wait_for(produced_it)
    assert producer.service == "belfry-ingest"
    assert producer.attributes["messaging.system"] == "rabbitmq"
    assert producer.attributes["messaging.destination.name"] == f"{prefix}.hits"
    assert producer.attributes["messaging.rabbitmq.destination.routing_key"] == "hit.batch"
    assert producer.attributes["messaging.batch.message_count"] >= 1

    def consumed_it(s: SpanRecord) -> bool:
        return s.kind == "consumer" and any(t == request.trace_id for t, _ in s.links)

    (consumer,) = await otlp.wait_for(consumed_it)
    assert consumer.service == "belfry-writer"
    assert consumer.attributes["messaging.system"] == "rabbitmq"
    assert consumer.attributes["messaging.destination.subscription.name"] == (
        f"{prefix}.writer.hits"
    )
    assert consumer.attributes["messaging.batch.message_count"] >= 1

    def inserted(s: SpanRecord) -> bool:
        return s.kind == "client" and s.parent_span_id == consumer.span_id

    (insert,) = await otlp.wait_for(inserted)
    assert insert.attributes["db.system"] == "postgresql"
    assert insert.attributes["db.collection.name"] == "events"
    assert insert.attributes["db.operation.batch.size"] >= 1

    # The hit's log lines carry its trace id.
    lines = [orjson.loads(line) for line in ingest.log.read_text().splitlines() if line]
    traced = [ln for ln in lines if ln.get("trace_id") == request.trace_id]
    assert traced, "no ingest log line carries the hit's trace id"
    assert all(ln["span_id"] for ln in traced)
    assert any(ln.get("email_id") == "traced-1" for ln in traced)


async def test_a_spooled_hit_shows_the_spool_and_its_replay(
    otlp: OtlpReceiver,
    start_ingest: Any,
    start_writer: Any,
    ingest_settings: Any,
    db: asyncpg.Connection,
) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "belfry-ingest"}))
    # A batch processor exports from its own thread: a synchronous export would block
    # the event loop that the in-test receiver answers on.
    exporter = OTLPSpanExporter(f"{otlp.endpoint}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    proxy = await start_broker_proxy()
    try:
        settings = replace(
            ingest_settings,
            common=replace(
                ingest_settings.common, amqp_url=proxy.url_for(ingest_settings.common.amqp_url)
            ),
        )
        writer = await start_writer()
        ingest = await start_ingest(settings, IngestDeps(tracer_provider=provider))
        await ready(writer)
        await ready(ingest)
        proxy.cut()
        resp = await ingest.get("/acme/pixel/spooled-1.gif")
        assert resp.status == 200

        def is_request(s: SpanRecord) -> bool:
            return s.kind == "server" and s.attributes.get("belfry.email_id") == "spooled-1"

        (request,) = await otlp.wait_for(is_request)
        assert "hit spooled" in request.events

        proxy.heal()
        await broker_up(ingest)

        def replayed_it(s: SpanRecord) -> bool:
            return (
                s.kind == "producer"
                and s.name.endswith("(spool replay)")
                and (request.trace_id, request.span_id) in s.links
            )

        (replay,) = await otlp.wait_for(replayed_it)
        assert replay.attributes["messaging.system"] == "rabbitmq"
        await rows(db, 1)
    finally:
        await proxy.close()
        provider.shutdown()
