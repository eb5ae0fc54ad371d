"""The ingest service's Prometheus metrics.

One `IngestMetrics` per app, on the app's registry (shared.prom): `create_app` builds it
and hands it to the hit publisher's observer and the metric intake; the routes reach it
through the per-app objects they already look up (`Hot.metrics`, `Intake.metrics`).
Label children the hot paths count are bound once here: `labels()` costs on every hit.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.ingest.publisher import Outcome, PublishObserver


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "belfry_ingest_events_total",
            "Hits by kind and outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "belfry_ingest_rejected_total",
            "Hits refused before publishing",
            ["reason"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "belfry_ingest_batch_events",
            "Events per published AMQP message",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=registry,
        )
        self.confirm_seconds = Histogram(
            "belfry_ingest_batch_confirm_seconds",
            "Time from flush to broker confirm or spool fsync",
            ["outcome"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "belfry_ingest_spool_bytes", "Bytes waiting in the local spool", registry=registry
        )
        self.spool_replayed = Counter(
            "belfry_ingest_spool_replayed_total", "Spool records replayed", registry=registry
        )
        self._intake(registry)
        # Bound once: every pixel, click and published batch counts one of these.
        self.opened = {o: self.events.labels("open", o.value) for o in Outcome}
        self.clicked = {o: self.events.labels("click", o.value) for o in Outcome}
        self._by_kind = {"open": self.opened, "click": self.clicked}
        self.confirm = {o: self.confirm_seconds.labels(o.value) for o in Outcome}
        self.rejected_bad_id = self.rejected.labels("bad_id")
        self.click_refused = self.rejected.labels("click_refused")

    def _intake(self, registry: CollectorRegistry) -> None:
        """Metric intake (/v1/metrics, /api/v1/write, /v1/samples) and error intake
        (/v1/errors, /v1/logs). Samples' outcome: published | spooled (stored: the answer
        was 2xx), unavailable (broker and spool could not take them: 503), ignored
        (end-of-series signals: staleness markers, "no recorded value")."""
        self.samples = Counter(
            "belfry_ingest_samples_total",
            "Metric samples taken in, by protocol and outcome",
            ["protocol", "outcome"],
            registry=registry,
        )
        self.samples_refused = Counter(
            "belfry_ingest_samples_refused_total",
            "Metric samples (OTLP: data points) refused, by protocol and reason",
            ["protocol", "reason"],
            registry=registry,
        )
        self.intake_spool_bytes = Gauge(
            "belfry_ingest_metrics_spool_bytes",
            "Bytes of metric samples waiting in the local spool",
            registry=registry,
        )
        self.errors = Counter(
            "belfry_ingest_errors_total",
            "Error events taken in (/v1/errors, /v1/logs), by protocol and outcome",
            ["protocol", "outcome"],
            registry=registry,
        )

    def event(self, kind: str, outcome: Outcome) -> Counter:
        """`belfry_ingest_events_total{kind, outcome}`: bound for open and click."""
        bound = self._by_kind.get(kind)
        return bound[outcome] if bound is not None else self.events.labels(kind, outcome.value)


class IngestObserver(PublishObserver):
    """The hit publisher's batches and replays, counted in `metrics`."""

    def __init__(self, metrics: IngestMetrics) -> None:
        self._metrics = metrics

    def batch_done(self, size: int, outcome: Outcome, seconds: float) -> None:
        self._metrics.batch_size.observe(size)
        self._metrics.confirm[outcome].observe(seconds)

    def replayed(self, records: int) -> None:
        self._metrics.spool_replayed.inc(records)
