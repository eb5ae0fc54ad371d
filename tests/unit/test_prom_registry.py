"""A Prometheus registry per app (shared.prom): two apps in one process keep their own
counts, and each app's /metrics serves its own registry: its own metrics, the process
collectors, and nothing of prometheus_client's default registry."""

from __future__ import annotations

import itertools

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from services.alerting.app import create_app as create_alerting
from services.alerting.keys import METRICS, NOTIFY_METRICS
from services.alerting.settings import AlertingSettings
from shared.httpobs import add_observability
from shared.httpserver import ConnectionCount, ConnectionMetrics
from shared.probes import Health, add_probe_routes, metrics
from shared.prom import PROMETHEUS, app_registry

_names = (f"belfry_unit_global_{i}" for i in itertools.count())


async def _client() -> TestClient:
    app = web.Application()
    add_observability(app, "unit", None)
    add_probe_routes(app, Health("unit", "0"))

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/hello", hello)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def _scrape(client: TestClient) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def test_two_apps_in_one_process_keep_separate_counts() -> None:
    first, second = await _client(), await _client()
    try:
        for _ in range(3):
            assert (await first.get("/hello")).status == 200
        assert (await second.get("/hello")).status == 200
        labels = (("method", "GET"), ("route", "/hello"), ("service", "unit"), ("status", "200"))
        assert _samples(await _scrape(first), "http_requests_total") == {labels: 3}
        assert _samples(await _scrape(second), "http_requests_total") == {labels: 1}
    finally:
        await first.close()
        await second.close()


async def test_an_app_serves_no_module_global_but_the_process_figures() -> None:
    stray = Counter(next(_names), "a module global on the default registry")
    stray.inc()
    own = await _client()
    try:
        text = await _scrape(own)
        assert f"{stray._name}_total" not in text
        # Process figures once each (the dashboard reads them), from the app's registry.
        assert len(_samples(text, "process_resident_memory_bytes")) == 1
        assert len(_samples(text, "python_info")) == 1
    finally:
        REGISTRY.unregister(stray)
        await own.close()


async def test_probes_alone_serve_a_registry_of_the_apps_own() -> None:
    app = web.Application()
    add_probe_routes(app, Health("unit", "0"))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert "process_resident_memory_bytes" in await _scrape(client)
        assert app[PROMETHEUS] is app_registry(app)
    finally:
        await client.close()


def _alerting() -> web.Application:
    return create_alerting(AlertingSettings.from_env({}))


async def test_each_alerting_app_counts_on_its_own_registry_and_serves_it() -> None:
    first, second = _alerting(), _alerting()
    first[METRICS].evaluations.inc(2)
    first[NOTIFY_METRICS].count("webhook", "failed", "tenant")
    second[METRICS].evaluations.inc()
    resp = await metrics(make_mocked_request("GET", "/metrics", app=first))
    assert isinstance(resp.body, bytes)
    text = resp.body.decode()
    assert _samples(text, "belfry_alerting_evaluations_total") == {(): 2}
    assert _samples(text, "belfry_alerting_notifications_total") == {
        (("channel_type", "webhook"), ("outcome", "failed"), ("owner", "tenant")): 1
    }
    assert second[PROMETHEUS].get_sample_value("belfry_alerting_evaluations_total") == 1
    assert [s.value for s in await first[NOTIFY_METRICS].failure_figures()] == [0, 1]
    assert [s.value for s in await second[NOTIFY_METRICS].failure_figures()] == [0, 0]
    # Nothing of the alerting service on the process's default registry.
    assert REGISTRY.get_sample_value("belfry_alerting_evaluations_total") is None


def test_connection_figures_go_to_the_registry_given() -> None:
    registry = CollectorRegistry()
    count = ConnectionCount(2, metrics=ConnectionMetrics(registry))
    assert count.take() and count.take() and not count.take()
    assert registry.get_sample_value("belfry_http_open_connections") == 2
    count.give_back()
    assert registry.get_sample_value("belfry_http_open_connections") == 1


def test_an_app_registry_is_made_once() -> None:
    app = web.Application()
    registry = app_registry(app)
    assert app_registry(app) is registry is app[PROMETHEUS]
    assert registry.get_sample_value("process_resident_memory_bytes") is not None
