"""The metric intake's way to the broker: a second `BatchPublisher`, on the metrics
exchange, with a spool of its own.

Why not the hits publisher: hits and samples go to different exchanges, and a spool's
records replay to the one exchange its publisher knows, so each stream needs its own
spool directory (`<INGEST_SPOOL_DIR>/metrics`; with INGEST_WORKERS, each worker's
`worker-<i>/metrics`). Its owner marker names the stream, so a directory that held hits
is never replayed into the metrics exchange.

Routing key `metric.intake` matches alerting's `metric.#` binding. On every connect the
alerting queue and its binding are declared too: a sample confirmed by the broker must
have a queue to sit in even before the alerting service first started (an unroutable
publish is returned, i.e. spooled, never confirmed and lost).
"""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractExchange

from services.ingest.intake.limits import TenantLimits
from services.ingest.keys import Intake
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import BatchPublisher, PublishObserver
from services.ingest.settings import IngestSettings
from services.ingest.spool import Spool
from shared.broker import Broker
from shared.probes import Health
from shared.topology import Topology, declare

ROUTING_KEY = "metric.intake"
APP_ID = "belfry-ingest-intake"
# Envelopes per AMQP message: one. An envelope is already a batch (a request's samples,
# up to MAX_EVENT_BYTES), and RabbitMQ pays per byte of a big message far more than per
# message: 8 envelopes a message (~2 MB at 2,000 samples a request) cost beam.smp 2.5-3x
# the CPU per sample of one (scripts/bench_intake.py at 50,000 samples/s: 1.8-2.0 vs
# 0.7 CPU s per 10 s), and the confirm of a bigger message came later (intake p99 59 vs
# 43 ms). Also: alerting gets the broker's messages a request at a time.
MAX_BATCH = 1
MAX_EVENT_BYTES = 1 << 20


def metrics_spool(settings: IngestSettings) -> Spool:
    return Spool(
        settings.spool_dir / "metrics",
        settings.spool_max_bytes,
        owner=f"prefix={settings.common.prefix} stream=metrics",
        # The hits spool's floor (they share a disk); grows with the largest batch seen.
        reserve_bytes=settings.batch_max * 512,
    )


def start_intake(
    settings: IngestSettings,
    broker: Broker,
    health: Health,
    limits: TenantLimits,
    metrics: IngestMetrics,
    observer: PublishObserver | None = None,
) -> Intake:
    """The intake's publisher and spool, wired to `broker` (before `broker.start()`);
    `metrics` (the app's) gets the spool's size and goes to the routes with the intake."""
    topo = Topology(settings.common.prefix)
    spool = metrics_spool(settings)
    declared: dict[str, AbstractExchange] = {}

    async def on_connect(channel: AbstractChannel) -> None:
        exchanges, _ = await declare(channel, topo.spec().part(f"{topo.prefix}.alerting."))
        declared["metrics"] = exchanges[topo.metrics_exchange]

    publisher = BatchPublisher(
        lambda: declared.get("metrics") if broker.available else None,
        ROUTING_KEY,
        spool,
        app_id=APP_ID,
        max_batch=MAX_BATCH,
        max_delay=settings.batch_delay,
        max_in_flight=settings.max_in_flight,
        confirm_timeout=settings.confirm_timeout,
        observer=observer,
        exchange_name=topo.metrics_exchange,
    )
    broker.on_connect(on_connect)
    broker.on_available(publisher.kick_replay)
    metrics.intake_spool_bytes.set_function(lambda: spool.size_bytes)
    health.add_check("metrics_confirms", publisher.check)
    health.add_check("metrics_spool", spool.check)
    return Intake(settings, publisher, limits, broker, metrics)
