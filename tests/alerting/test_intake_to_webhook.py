"""Issue 12's "done when", whole: what an application sends through ingest's intake makes a
Belfry rule fire, and the alert reaches a webhook subscriber that verifies the Standard
Webhooks signature, on the real broker and database, with the real clock:

- an application instrumented with the OpenTelemetry Python SDK (its OTLP/HTTP exporter);
- a real `prometheus` scraping a small exporter and remote-writing to ingest.

Another tenant sending the same metric names with breaching values through its own token
never reaches the tenant's rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from standardwebhooks.webhooks import Webhook

from services.alerting.evaluator import AlertEngine
from services.alerting.keys import AlertingDeps
from shared.ingest_tokens import mint_token
from shared.signing import SigningKeys
from tests.alerting.conftest import TENANT, StartAlerting, engine_of
from tests.alerting.notify.conftest import Receiver
from tests.alerting.test_metric_rules_flow import add_rule, add_signed_webhook
from tests.conftest import Started
from tests.integration.helpers import ready
from tests.support.eventually import eventually
from tests.support.prometheus import REMOTE_WRITE_CONFIG, exporter, prometheus

KEYS = SigningKeys.parse("e2e1:intake-to-webhook-secret-0123")
OTHER = "globex"


def utcnow() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def stack(
    start_ingest: Started, start_alerting: StartAlerting
) -> tuple[TestClient, TestClient]:
    """Ingest (tokens of KEYS) and alerting on the real clock, on this test's broker
    prefix and database."""
    ingest = await start_ingest(token_keys=KEYS)
    await ready(ingest)
    alerting = await start_alerting(deps=AlertingDeps(clock=utcnow))
    return ingest, alerting


def _base(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def _fired(engine: AlertEngine, rule: str, labels: dict[str, str]) -> None:
    """Tick until the rule's alert for `labels` fires (its samples arrive through the
    broker on their own time)."""

    async def state() -> str | None:
        await engine.tick()
        for alert in engine.alerts.values():
            if engine.rules[alert.rule_id].name == rule and alert.labels == labels:
                return alert.state
        return None

    await eventually(state, lambda s: s == "firing", timeout=30, what=f"{rule} firing")


def _verified(receiver_requests: list[Any], secret: str) -> dict[str, dict[str, str]]:
    fired = {}
    for request in receiver_requests:
        body = Webhook(secret).verify(request.body, request.headers)
        for alert in body["alerts"]:
            fired[alert["labels"]["alertname"]] = alert["labels"]
    return fired


def _export_with_sdk(endpoint: str, token: str, service: str, depth: float) -> None:
    """What an application instrumented with the OTel SDK does (blocking: in a thread)."""
    exporter = OTLPMetricExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {token}"})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"service.name": service, "service.instance.id": "pod-1"})
    provider = MeterProvider(resource=resource, metric_readers=[reader])

    def observe(_: CallbackOptions) -> list[Observation]:
        return [Observation(depth)]

    provider.get_meter("app").create_observable_gauge("queue_depth", callbacks=[observe])
    assert provider.force_flush(10_000)
    provider.shutdown()


async def test_otel_sdk_metrics_fire_a_rule_at_a_signed_webhook(
    db: asyncpg.Connection,
    stack: tuple[TestClient, TestClient],
    webhook_receiver: Receiver,
) -> None:
    ingest, alerting = stack
    secret = await add_signed_webhook(db, webhook_receiver)
    await add_rule(db, "QueueDeep", "queue_depth > 1000")
    engine = engine_of(alerting)
    await engine.load()  # the rule added after start-up
    url = _base(ingest) + "/v1/metrics"
    # The other tenant's app, same metric name, a breaching value: never the tenant's.
    await asyncio.to_thread(_export_with_sdk, url, mint_token(KEYS, OTHER), "intruder", 9e9)
    await asyncio.to_thread(_export_with_sdk, url, mint_token(KEYS, TENANT), "checkout", 1234)

    await _fired(engine, "QueueDeep", {"service": "checkout", "instance": "pod-1"})
    requests = await webhook_receiver.wait(1)
    fired = _verified(requests, secret)
    assert fired == {
        "QueueDeep": {
            "alertname": "QueueDeep",
            "severity": "warning",
            "service": "checkout",
            "instance": "pod-1",
        }
    }
    assert all(a.labels.get("service") != "intruder" for a in engine.alerts.values())


@pytest.fixture
async def app_exporter() -> AsyncIterator[str]:
    async with exporter("# TYPE app_queue_depth gauge\napp_queue_depth 1001\n") as target:
        yield target


async def test_real_prometheus_remote_write_fires_a_rule_at_a_signed_webhook(
    db: asyncpg.Connection,
    stack: tuple[TestClient, TestClient],
    webhook_receiver: Receiver,
    app_exporter: str,
    tmp_path: Path,
) -> None:
    ingest, alerting = stack
    secret = await add_signed_webhook(db, webhook_receiver)
    await add_rule(db, "AppQueueDeep", "app_queue_depth > 1000")
    engine = engine_of(alerting)
    await engine.load()
    token_file = tmp_path / "token"
    token_file.write_text(mint_token(KEYS, TENANT))
    config = REMOTE_WRITE_CONFIG.format(
        target=app_exporter, url=_base(ingest), token_file=token_file
    )
    async with prometheus(config, tmp_path) as (_proc, log):
        try:
            await _fired(engine, "AppQueueDeep", {"instance": app_exporter, "job": "app"})
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
    requests = await webhook_receiver.wait(1)
    fired = _verified(requests, secret)
    assert fired["AppQueueDeep"]["instance"] == app_exporter
    assert fired["AppQueueDeep"]["job"] == "app"
