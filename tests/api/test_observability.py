"""The api's observability: server spans per request, `/metrics` passes `promtool check
metrics` and its counters move, self-reported metric events reach the metrics exchange,
and the probes answer (the broker, used only for self-reports, makes the api degraded,
never unready)."""

from __future__ import annotations

from dataclasses import replace

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractConnection
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from services.api.keys import ApiDeps
from services.api.settings import ApiSettings
from shared.contracts import METRIC_V1, validate_envelope
from shared.topology import Topology
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.integration.test_prometheus_text import check_metrics, scrape
from tests.support.eventually import eventually


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def test_metrics_pass_promtool_and_move(db: asyncpg.Connection, start_api: Started) -> None:
    key = await new_tenant(db, "acme")
    api = await start_api()
    before = await scrape(api)
    route = {"service": "api", "route": "/{tenant}/emails", "method": "POST"}
    for _ in range(3):
        resp = await api.post("/acme/emails", headers=bearer(key))
        assert resp.status == 201
    resp = await api.get("/acme/stats", headers=bearer("blf_nothing_" + "x" * 40))
    assert resp.status == 401
    resp = await api.get("/acme/export.csv", headers=bearer(key))
    await resp.read()
    text = await scrape(api)
    status, out = await check_metrics(text)
    assert status == 0, out
    requests = "http_requests_total"
    assert (
        sample(text, requests, **route, status="201")
        - sample(before, requests, **route, status="201")
        == 3
    )
    assert (
        sample(text, "belfry_api_emails_registered_total")
        - sample(before, "belfry_api_emails_registered_total")
        == 3
    )
    assert sample(text, "belfry_api_auth_refused_total", reason="unauthenticated") >= 1
    assert sample(text, "belfry_api_exports_total", format="csv", outcome="complete") >= 1


async def test_self_reports_reach_the_metrics_exchange(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    amqp: AbstractConnection,
    prefix: str,
) -> None:
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(
        Topology(prefix).metrics_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "metric.api")
    settings = replace(api_settings, common=replace(api_settings.common, metrics_interval=0.2))
    api = await start_api(settings, ApiDeps(self_report=True))
    await ready(api)
    message = await eventually(
        lambda: queue.get(fail=False), lambda m: m is not None, timeout=10, what="an api report"
    )
    assert message is not None
    await message.ack()
    events = [validate_envelope(doc) for doc in orjson.loads(message.body)]
    names = {e.data["name"] for e in events}
    assert {"belfry_heartbeat", "belfry_http_request_rate", "belfry_process_rss_bytes"} <= names
    assert all(e.type == METRIC_V1 and e.data["labels"]["service"] == "api" for e in events)

    resp = await api.get("/health/detailed")
    detail = await resp.json()
    assert detail["status"] == "healthy"
    assert set(detail["dependencies"]) == {"database", "broker"}


async def test_broker_down_is_degraded_not_unready(
    start_api: Started, api_settings: ApiSettings
) -> None:
    common = replace(api_settings.common, amqp_url="amqp://guest:guest@127.0.0.1:1/")
    api = await start_api(replace(api_settings, common=common), ApiDeps(self_report=True))
    await ready(api)
    resp = await api.get("/health/detailed")
    detail = await resp.json()
    assert resp.status == 200 and detail["status"] == "degraded"
    assert detail["dependencies"]["broker"]["status"] == "unhealthy"


async def test_database_down_answers_503_not_500(
    start_api: Started, api_settings: ApiSettings
) -> None:
    common = replace(api_settings.common, database_url="postgresql://postgres@127.0.0.1:1/none")
    api = await start_api(replace(api_settings, common=common))
    resp = await api.get("/readyz")
    assert resp.status == 503
    resp = await api.get("/acme/stats", headers=bearer("blf_abcdefabcdef_" + "x" * 40))
    assert resp.status == 503
    assert "database unavailable" in (await resp.json())["error"]
    resp = await api.get("/livez")
    assert resp.status == 200


async def test_requests_are_server_spans_named_by_route(
    db: asyncpg.Connection, start_api: Started
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "belfry-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    key = await new_tenant(db, "acme")
    api = await start_api(deps=ApiDeps(tracer_provider=provider, self_report=False))
    resp = await api.post("/acme/emails", headers=bearer(key))
    email_id = (await resp.json())["email_id"]
    await api.get(f"/acme/emails/{email_id}", headers=bearer(key))
    await api.get("/readyz")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /{tenant}/emails", "GET /{tenant}/emails/{email_id}"}
    create = spans["POST /{tenant}/emails"]
    assert create.kind == SpanKind.SERVER
    assert create.attributes is not None
    assert create.attributes["belfry.tenant"] == "acme"
    assert create.attributes["http.response.status_code"] == 201
    read = spans["GET /{tenant}/emails/{email_id}"].attributes
    assert read is not None and read["belfry.email_id"] == email_id
    provider.shutdown()
