"""The ingest service's Prometheus metrics (children bound once: labels cost on the hot path)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.ingest.publisher import Outcome, PublishObserver

EVENTS = Counter("belfry_ingest_events_total", "Hits by kind and outcome", ["kind", "outcome"])
REJECTED = Counter("belfry_ingest_rejected_total", "Hits refused before publishing", ["reason"])
BATCH_SIZE = Histogram(
    "belfry_ingest_batch_events",
    "Events per published AMQP message",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
CONFIRM_SECONDS = Histogram(
    "belfry_ingest_batch_confirm_seconds",
    "Time from flush to broker confirm or spool fsync",
    ["outcome"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SPOOL_BYTES = Gauge("belfry_ingest_spool_bytes", "Bytes waiting in the local spool")
SPOOL_REPLAYED = Counter("belfry_ingest_spool_replayed_total", "Spool records replayed")

# Metric intake (/v1/metrics, /api/v1/write, /v1/samples). outcome: published | spooled
# (stored: the answer was 2xx), unavailable (broker and spool could not take them: 503),
# ignored (end-of-series signals: staleness markers, "no recorded value").
SAMPLES = Counter(
    "belfry_ingest_samples_total",
    "Metric samples taken in, by protocol and outcome",
    ["protocol", "outcome"],
)
SAMPLES_REFUSED = Counter(
    "belfry_ingest_samples_refused_total",
    "Metric samples (OTLP: data points) refused, by protocol and reason",
    ["protocol", "reason"],
)
INTAKE_SPOOL_BYTES = Gauge(
    "belfry_ingest_metrics_spool_bytes", "Bytes of metric samples waiting in the local spool"
)

_confirm = {o: CONFIRM_SECONDS.labels(o.value) for o in Outcome}


def events(kind: str, outcome: Outcome) -> Counter:
    return EVENTS.labels(kind, outcome.value)


class IngestObserver(PublishObserver):
    def batch_done(self, size: int, outcome: Outcome, seconds: float) -> None:
        BATCH_SIZE.observe(size)
        _confirm[outcome].observe(seconds)

    def replayed(self, records: int) -> None:
        SPOOL_REPLAYED.inc(records)
