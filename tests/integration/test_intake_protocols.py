"""The metric intake end to end on the real broker: what the protocols applications already
speak (the OpenTelemetry Python SDK's OTLP/HTTP exporter, Prometheus remote_write built with
the intake's own descriptors, a real `prometheus` scraping and remote-writing, a curl-like
JSON POST) arrives on `<prefix>.metrics` as `metric.v2` events of the token's tenant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractConnection
from aiohttp.test_utils import TestClient
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from services.ingest.intake_publisher import ROUTING_KEY
from shared.ingest_tokens import mint_token
from shared.signing import SigningKeys
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.support import prometheus as prom
from tests.support.metric_sink import MetricSink
from tests.support.remote_write import HEADERS as RW
from tests.support.remote_write import remote_write_body

KEYS = SigningKeys.parse("m1:intake-token-secret-0123")


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(KEYS, tenant)}"}


@pytest.fixture
async def sink(amqp: AbstractConnection, prefix: str) -> MetricSink:
    return await MetricSink(amqp, prefix).start()


@pytest.fixture
async def ingest(start_ingest: Started) -> TestClient:
    client = await start_ingest(token_keys=KEYS)
    await ready(client)
    return client


def _base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


def _export_with_sdk(endpoint: str, token: str) -> None:
    """What an application instrumented with the OTel SDK does (blocking: run in a thread)."""
    exporter = OTLPMetricExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {token}"})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"service.name": "checkout", "service.instance.id": "pod-1"})
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("test")
    meter.create_counter("orders").add(3, {"tenant": "other"})
    meter.create_observable_gauge("queue_depth", callbacks=[lambda _: [Observation(1234.0)]])
    latency = meter.create_histogram("api_latency", unit="ms")
    for value in (12, 80, 600):
        latency.record(value, {"route": "/pay"})
    assert provider.force_flush(10_000)
    provider.shutdown()


async def test_otel_sdk_counter_gauge_histogram_arrive(
    ingest: TestClient, sink: MetricSink
) -> None:
    token = mint_token(KEYS, "acme")
    await asyncio.to_thread(_export_with_sdk, _base(ingest) + "/v1/metrics", token)
    await sink.wait_for("orders", "queue_depth", "api_latency_bucket", "api_latency_count")
    samples = sink.samples()
    assert {s["tenant"] for s in samples} == {"acme"}
    assert sink.routing_keys == {ROUTING_KEY}
    orders = sink.named("orders")[0]  # shutdown() exports once more
    assert orders["kind"] == "counter" and orders["value"] == 3.0
    # The body's `tenant` attribute is data, never the tenant.
    assert orders["labels"] == {
        "service": "checkout",
        "instance": "pod-1",
        "exported_tenant": "other",
    }
    depth = sink.named("queue_depth")[0]
    assert depth["kind"] == "gauge" and depth["value"] == 1234.0
    buckets = {s["labels"]["le"]: s["value"] for s in sink.named("api_latency_bucket")}
    assert buckets["+Inf"] == 3.0 and all(
        s["kind"] == "histogram_bucket" for s in samples if s["name"] == "api_latency_bucket"
    )
    assert buckets["100"] == 2.0  # the SDK's default bounds: 12 and 80 are <= 100
    total = sink.named("api_latency_sum")[0]
    assert total["value"] == 692.0 and total["kind"] == "counter"


async def test_remote_write_arrives(ingest: TestClient, sink: MetricSink) -> None:
    body = remote_write_body(
        [
            (
                {"__name__": "http_requests_total", "job": "web", "code": "200"},
                [(10, 1_764_560_000_000)],
            ),
            (
                {"__name__": "db_connections", "job": "web", "tenant": "globex"},
                [(81, 1_764_560_000_000)],
            ),
        ]
    )
    async with ingest.post("/api/v1/write", data=body, headers={**RW, **bearer("acme")}) as resp:
        assert resp.status == 204, await resp.text()
    await sink.wait_for("http_requests_total", "db_connections")
    by_name = {s["name"]: s for s in sink.samples()}
    assert by_name["http_requests_total"] == {
        "name": "http_requests_total",
        "value": 10.0,
        "ts": 1_764_560_000_000,
        "labels": {"code": "200", "job": "web"},
        "kind": "counter",
        "tenant": "acme",
    }
    assert by_name["db_connections"]["labels"] == {"job": "web", "exported_tenant": "globex"}
    assert by_name["db_connections"]["tenant"] == "acme"


async def test_plain_json_form_arrives(ingest: TestClient, sink: MetricSink) -> None:
    items = [
        {"name": "queue_depth", "value": 1500, "labels": {"queue": "mail"}},
        {"name": "jobs_done_total", "value": 7, "kind": "counter", "ts": 1_764_560_000.5},
        {"name": "email_delivery_rate", "value": 93.5, "tenant": "globex"},
    ]
    async with ingest.post("/v1/samples", json=items, headers=bearer("acme")) as resp:
        assert resp.status == 202, await resp.text()
        assert await resp.json() == {"accepted": 3, "rejected": 0}
    await sink.wait_for("queue_depth", "jobs_done_total", "email_delivery_rate")
    by_name = {s["name"]: s for s in sink.samples()}
    assert {s["tenant"] for s in by_name.values()} == {"acme"}
    assert by_name["jobs_done_total"]["ts"] == 1_764_560_000_500
    assert by_name["jobs_done_total"]["kind"] == "counter"
    assert by_name["queue_depth"]["labels"] == {"queue": "mail"}


# --- a real Prometheus scraping an exporter and remote-writing to ingest ----------------


APP_METRICS = (
    "# TYPE app_requests_total counter\n"
    'app_requests_total{code="200"} 42\n'
    "# TYPE app_queue_depth gauge\n"
    "app_queue_depth 1001\n"
    "# TYPE app_latency_seconds histogram\n"
    'app_latency_seconds_bucket{le="0.1"} 5\n'
    'app_latency_seconds_bucket{le="+Inf"} 9\n'
    "app_latency_seconds_sum 3.5\n"
    "app_latency_seconds_count 9\n"
)


@pytest.fixture
async def app_exporter() -> AsyncIterator[str]:
    """A tiny application exposing Prometheus text, as prom-client or client_python do."""
    async with prom.exporter(APP_METRICS) as target:
        yield target


async def test_real_prometheus_remote_writes(
    ingest: TestClient, sink: MetricSink, app_exporter: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(mint_token(KEYS, "acme"))
    config = prom.REMOTE_WRITE_CONFIG.format(
        target=app_exporter, url=_base(ingest), token_file=token_file
    )
    async with prom.prometheus(config, tmp_path) as (_proc, log):
        try:
            await sink.wait_for(
                "app_requests_total", "app_queue_depth", "app_latency_seconds_bucket", timeout=60
            )
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
    samples = sink.samples()
    assert {s["tenant"] for s in samples} == {"acme"}
    (requests,) = {s["value"]: s for s in sink.named("app_requests_total")}.values()
    assert requests["kind"] == "counter" and requests["labels"]["code"] == "200"
    assert requests["labels"]["job"] == "app"
    buckets = sink.named("app_latency_seconds_bucket")
    assert {b["labels"]["le"] for b in buckets} == {"0.1", "+Inf"}
    assert all(b["kind"] == "histogram_bucket" for b in buckets)
    depth = sink.named("app_queue_depth")
    assert depth[0]["value"] == 1001.0 and depth[0]["kind"] == "gauge"
