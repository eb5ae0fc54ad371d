"""The writer's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_INSERTED = Counter("belfry_writer_rows_inserted_total", "Event rows stored")
DUPLICATES = Counter("belfry_writer_duplicates_total", "Events skipped as already stored")
DEAD_LETTERED = Counter(
    "belfry_writer_dead_lettered_total", "Events or messages sent to the DLQ", ["stage"]
)
INSERT_SECONDS = Histogram(
    "belfry_writer_insert_seconds",
    "Duration of one batch insert transaction",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_ROWS = Histogram(
    "belfry_writer_batch_rows",
    "Rows per insert transaction",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
)
DB_FAILURES = Counter("belfry_writer_db_failures_total", "Failed insert attempts")
LAG_SECONDS = Gauge(
    "belfry_writer_lag_seconds",
    "Age of the oldest hit received but not yet stored (grows while inserts fail); "
    "with none waiting, the received → stored delay of the last stored batch",
)
