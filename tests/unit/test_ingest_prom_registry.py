"""The ingest service's metrics live on its app's own registry (shared.prom): two ingest
apps in one process count separately, each `/metrics` serves its own app's figures and
none of prometheus_client's default registry, and nothing of ingest sits on the latter."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.metrics import IngestMetrics, IngestObserver
from services.ingest.publisher import Outcome
from shared.prom import PROMETHEUS
from tests.conftest import Started
from tests.integration.helpers import ready

OPENS = "belfry_ingest_events_total"


def _opens(text: str) -> float:
    """Opens counted, whatever their outcome (published, or spooled if the broker lagged)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == OPENS and s.labels["kind"] == "open"
    )


async def _scrape(client: TestClient) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def _pixels(client: TestClient, n: int) -> None:
    for _ in range(n):
        assert (await client.get("/acme/pixel/e1.gif")).status == 200


async def test_two_ingest_apps_in_one_process_count_separately(
    start_ingest: Started, tmp_path: Path
) -> None:
    first = await start_ingest(spool_dir=tmp_path / "first")
    second = await start_ingest(spool_dir=tmp_path / "second")
    await ready(first)
    await ready(second)
    await _pixels(first, 3)
    assert (await first.get("/ACME/pixel/e1.gif")).status == 404
    await _pixels(second, 1)

    assert _opens(await _scrape(first)) == 3
    assert _opens(await _scrape(second)) == 1
    bad_id = {"reason": "bad_id"}
    assert first.app[PROMETHEUS].get_sample_value("belfry_ingest_rejected_total", bad_id) == 1
    assert second.app[PROMETHEUS].get_sample_value("belfry_ingest_rejected_total", bad_id) == 0
    # Nothing of ingest on the process's default registry.
    for outcome in Outcome:
        labels = {"kind": "open", "outcome": outcome.value}
        assert REGISTRY.get_sample_value(OPENS, labels) is None


async def test_ingest_metrics_serves_no_module_global(
    start_ingest: Started, tmp_path: Path
) -> None:
    stray = Counter("belfry_unit_ingest_stray", "a module global on the default registry")
    stray.inc()
    try:
        text = await _scrape(await start_ingest())
    finally:
        REGISTRY.unregister(stray)
    assert "belfry_unit_ingest_stray" not in text
    assert "belfry_ingest_spool_bytes" in text  # its own, and the process figures of its own
    assert "process_resident_memory_bytes" in text


def test_the_observer_counts_into_the_metrics_it_was_given() -> None:
    registry, other = CollectorRegistry(), CollectorRegistry()
    IngestMetrics(other)  # a second app's: untouched
    observer = IngestObserver(IngestMetrics(registry))
    observer.batch_done(7, Outcome.SPOOLED, 0.003)
    observer.replayed(5)
    assert registry.get_sample_value("belfry_ingest_batch_events_sum") == 7
    confirm = {"outcome": "spooled"}
    assert registry.get_sample_value("belfry_ingest_batch_confirm_seconds_count", confirm) == 1
    assert registry.get_sample_value("belfry_ingest_spool_replayed_total") == 5
    assert other.get_sample_value("belfry_ingest_spool_replayed_total") == 0
