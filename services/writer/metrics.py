"""The writer's Prometheus metrics.

One `WriterMetrics` per app, on the app's registry (shared.prom): `create_app` builds it
and hands it to the consumer, which counts every stored batch into it; a consumer built
without an app (unit tests) makes its own on a fresh registry. Label children counted
per batch are bound once here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.selfreport import queue_messages_gauge

_STAGES = ("decode", "validate", "store")  # shared.deadletter's stages of the writer


class WriterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows_inserted = Counter(
            "belfry_writer_rows_inserted_total", "Event rows stored", registry=registry
        )
        self.duplicates = Counter(
            "belfry_writer_duplicates_total",
            "Events skipped as already stored",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "belfry_writer_dead_lettered_total",
            "Events or messages sent to the DLQ",
            ["stage"],
            registry=registry,
        )
        self.insert_seconds = Histogram(
            "belfry_writer_insert_seconds",
            "Duration of one batch insert transaction",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.batch_rows = Histogram(
            "belfry_writer_batch_rows",
            "Rows per insert transaction",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        )
        self.db_failures = Counter(
            "belfry_writer_db_failures_total", "Failed insert attempts", registry=registry
        )
        self.lag_seconds = Gauge(
            "belfry_writer_lag_seconds",
            "Age of the oldest hit received but not yet stored (grows while inserts fail); "
            "with none waiting, the received → stored delay of the last stored batch",
            registry=registry,
        )
        self.queue_messages = queue_messages_gauge(registry)
        # Bound once: a dead-lettered event or message counts one of these.
        self.dead_lettered_by_stage = {s: self.dead_lettered.labels(s) for s in _STAGES}

    def lag(self) -> float:
        """The lag gauge's current value (its function, once the consumer set it)."""
        (family,) = self.lag_seconds.collect()
        return family.samples[0].value
