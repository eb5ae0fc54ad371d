"""Every metric the Grafana dashboard and the Prometheus rules query is one the services
really export: names are read from the /metrics text of a running ingest and writer (the
fixtures of tests/conftest.py) and from every service's metrics modules: each
`*Metrics` class of a services/**/metrics.py (and of shared/) built on a registry of its
own (shared.prom: one registry per app), and, for a service not migrated to that yet,
the module globals its import puts on prometheus_client's default registry. A query
naming anything else fails the test."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterable
from types import ModuleType

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared import httpobs, httpserver
from tests.conftest import Started
from tests.deploy.support import INFRA, ROOT, promql_metrics
from tests.integration.helpers import ready

DASHBOARD = INFRA / "grafana" / "dashboards" / "belfry-overview.json"
RULES = sorted((INFRA / "prometheus" / "rules").glob("*.yml"))
# Recorded by Prometheus itself for each scrape target or alert, not by a service.
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "ALERTS", "ALERTS_FOR_STATE"})
# The alerting service's metric names are fixed (its dashboards and rules depend on them).
ALERTING_CONTRACT = frozenset(
    {
        "belfry_alerting_evaluations_total",
        "belfry_alerting_alerts",
        "belfry_alerting_transitions_total",
        "belfry_alerting_notifications_total",
        "belfry_alerting_delivery_seconds_bucket",
        "belfry_alerting_delivery_seconds_count",
        "belfry_alerting_delivery_seconds_sum",
    }
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}


def exposed_names(text: str) -> set[str]:
    """Every series name a scrape of `text` can yield, also for labelled metrics that have
    no child yet (their # TYPE line is there, their samples not)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())

    def walk(panels: Iterable[dict]) -> Iterable[tuple[str, str]]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield panel["title"], target["expr"]
            yield from walk(panel.get("panels", []))

    return list(walk(doc["panels"]))


def rule_queries() -> list[tuple[str, str]]:
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((rule.get("alert") or rule["record"], rule["expr"]))
    return out


def optional_service_metrics(service: str) -> list[ModuleType]:
    """Import every `metrics.py` module of services/<service>/ (e.g. services.alerting.metrics
    and services.alerting.notify.metrics) if that service exists."""
    package = ROOT / "services" / service
    paths = sorted(package.rglob("metrics.py")) if package.is_dir() else []
    return [
        importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for path in paths
    ]


def metric_class_names(modules: Iterable[ModuleType]) -> set[str]:
    """What each `*Metrics` class of the modules (an app builds one on its registry:
    shared.prom) exposes, built on a registry of its own."""
    names: set[str] = set()
    for module in modules:
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.endswith("Metrics") and cls.__module__ == module.__name__:
                registry = CollectorRegistry()
                cls(registry)
                names |= exposed_names(generate_latest(registry).decode())
    return names


@pytest.fixture
async def exported(start_ingest: Started, start_writer: Started) -> set[str]:
    writer = await start_writer()
    ingest = await start_ingest()
    await ready(writer)
    await ready(ingest)
    names: set[str] = set()
    for client in (ingest, writer):
        resp = await client.get("/metrics")
        assert resp.status == 200
        names |= exposed_names(await resp.text())
    alerting = optional_service_metrics("alerting")
    others = [m for s in ("api", "ingest", "writer") for m in optional_service_metrics(s)]
    names |= metric_class_names([*alerting, *others, httpobs, httpserver])
    # Services whose metrics are still module globals (imported above or by the fixtures).
    names |= exposed_names(generate_latest(REGISTRY).decode())
    if alerting:
        missing = ALERTING_CONTRACT - names
        assert not missing, f"services/alerting/**/metrics.py do not export {sorted(missing)}"
    else:
        names |= ALERTING_CONTRACT  # not built yet: hold the queries to the fixed names
    return names


def test_promql_metric_extraction() -> None:
    expr = (
        'sum by (service, le) (rate(http_request_duration_seconds_bucket{route=~"/x|y"}'
        "[$__rate_interval])) / on (service) group_left(version) foo_info offset 5m"
        ' > bool 0.5 and max without (queue) (belfry_queue_messages{queue!~".*\\\\.dlq"}) > 1e3'
    )
    assert promql_metrics(expr) == {
        "http_request_duration_seconds_bucket",
        "foo_info",
        "belfry_queue_messages",
    }
    assert promql_metrics("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))") == {
        "x_bucket"
    }


async def test_every_dashboard_and_rule_query_names_exported_metrics(exported: set[str]) -> None:
    known = exported | PROMETHEUS_OWN
    # The check itself must be able to fail.
    assert promql_metrics("rate(belfry_no_such_metric_total[5m])") - known == {
        "belfry_no_such_metric_total"
    }
    queries = dashboard_queries() + rule_queries()
    assert len(queries) > 20
    unknown = {(where, name) for where, expr in queries for name in promql_metrics(expr) - known}
    assert not unknown, f"queries name metrics no service exports: {sorted(unknown)}"


def test_dashboard_covers_what_the_issue_lists() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "belfry-overview"
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    used = set().union(*(promql_metrics(expr) for _, expr in dashboard_queries()))
    for needed in (
        "http_requests_total",  # request and error rate
        "http_request_duration_seconds_bucket",  # latency percentiles
        "belfry_ingest_events_total",  # events in
        "belfry_writer_rows_inserted_total",  # events out
        "belfry_queue_messages",  # queue depth
        "belfry_ingest_spool_bytes",  # spool
        "belfry_writer_lag_seconds",  # writer lag
        "belfry_alerting_alerts",  # alerts firing
        "belfry_alerting_notifications_total",  # notification outcomes
    ):
        assert needed in used, needed
    provisioned = yaml.safe_load(
        (INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert "prometheus" in {d["uid"] for d in provisioned["datasources"]}
