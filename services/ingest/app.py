"""Composition root of the ingest service: `create_app(settings, deps=None)`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aio_pika.abc import AbstractChannel, AbstractExchange
from aiohttp import web

from services.ingest.fastpixel import add_pixel_fast_path
from services.ingest.intake.limits import TenantLimits
from services.ingest.intake_publisher import start_intake
from services.ingest.keys import (
    BROKER,
    DEPS,
    HEALTH,
    HOT,
    INTAKE,
    METRICS,
    PUBLISH_LANE,
    SETTINGS,
    SPOOL,
    Hot,
    IngestDeps,
)
from services.ingest.metrics import IngestMetrics, IngestObserver
from services.ingest.publisher import BatchPublisher, Exchange
from services.ingest.publishlane import HitsLane, LaneExchange, lane_supported
from services.ingest.routes import click, errors, intake, pixel, track
from services.ingest.settings import IngestSettings
from services.ingest.spool import Spool
from shared.broker import Broker
from shared.httpobs import HTTP_STATS
from shared.prom import app_registry
from shared.selfreport import Collector, MetricReporter, Sample, broker_exchange
from shared.telemetry import tracer_for
from shared.topology import HitTopology, Topology, declare_hits
from shared.webapp import service_app

log = logging.getLogger("belfry.ingest")

OPENAPI = Path(__file__).resolve().parent / "openapi.yaml"


def _spool_figures(spool: Spool) -> Collector:
    """The ingest's own self-reported figure: bytes waiting in the spool."""

    async def collect() -> list[Sample]:
        return [Sample("belfry_ingest_spool_bytes", spool.size_bytes)]

    return collect


def _hit_publisher(
    app: web.Application,
    exchange: Callable[[], Exchange | None],
    spool: Spool,
    topo: Topology,
) -> BatchPublisher:
    """The hits' confirm-or-spool micro-batching publisher, as the settings say."""
    settings = app[SETTINGS]
    return BatchPublisher(
        exchange,
        topo.HITS_ROUTING_KEY,
        spool,
        app_id="belfry-ingest",
        max_batch=settings.batch_max,
        max_delay=settings.batch_delay,
        max_in_flight=settings.max_in_flight,
        eager_in_flight=settings.eager_in_flight,
        confirm_timeout=settings.confirm_timeout,
        observer=IngestObserver(app[METRICS]),
        tracer=tracer_for(app[DEPS].tracer_provider),
        exchange_name=topo.hits_exchange,
    )


def _hit_spool(settings: IngestSettings, metrics: IngestMetrics) -> Spool:
    """The hits' spool; its size is the app's `belfry_ingest_spool_bytes`."""
    spool = Spool(
        settings.spool_dir,
        settings.spool_max_bytes,
        owner=f"prefix={settings.common.prefix}",
        # Readiness wants room for a full batch before any was seen (~512 B per hit).
        reserve_bytes=settings.batch_max * 512,
    )
    metrics.spool_bytes.set_function(lambda: spool.size_bytes)
    return spool


def _hits_route(
    app: web.Application, broker: Broker, topo: Topology
) -> tuple[Callable[[], Exchange | None], HitsLane | None]:
    """Where hit batches go, as the publisher asks on each batch: the publish lane (unless
    turned off or the URL is not plain amqp://) or aio-pika's exchange, None while the
    broker is away. Declares the hits' topology, then opens the lane, on each connect."""
    url = app[SETTINGS].common.amqp_url
    lane = None
    if app[SETTINGS].publish_lane and lane_supported(url):
        lane = HitsLane(url, f"{broker.name} publish lane", topo.hits_exchange, broker.drop)
        broker.on_disconnect(lane.close)
        app[PUBLISH_LANE] = lane
    declared: dict[str, HitTopology] = {}

    async def on_connect(channel: AbstractChannel) -> None:
        declared["hits"] = await declare_hits(channel, topo)
        if lane is not None:
            await lane.reopen()

    def hits_exchange() -> AbstractExchange | LaneExchange | None:
        if not broker.available or "hits" not in declared:
            return None
        return declared["hits"].hits if lane is None else lane.exchange

    broker.on_connect(on_connect)
    return hits_exchange, lane


async def _broker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, metrics = app[SETTINGS], app[METRICS]
    common = settings.common
    topo = Topology(common.prefix)
    spool = _hit_spool(settings, metrics)
    broker = Broker(common.amqp_url, f"belfry-ingest:{settings.spool_dir.name}")
    hits_exchange, lane = _hits_route(app, broker, topo)
    publisher = _hit_publisher(app, hits_exchange, spool, topo)
    broker.on_available(publisher.kick_replay)
    app[BROKER] = broker
    app[SPOOL] = spool
    app[HOT] = Hot(settings, publisher, app[DEPS].clock, metrics)

    health = app[HEALTH]
    health.add_check("broker", broker.check)
    health.add_check("confirms", publisher.check)
    health.add_check("spool", spool.check)
    limits = TenantLimits(settings.intake_limits, app[DEPS].monotonic)
    app[INTAKE] = metric_path = start_intake(settings, broker, health, limits, metrics)
    reporter = MetricReporter(
        "ingest",
        broker_exchange(broker, topo.metrics_exchange),
        stats=app[HTTP_STATS],
        collectors=[_spool_figures(spool)],
        interval=common.metrics_interval,
    )
    await broker.start()
    # The port opens after this context: hits that arrive before the first connect
    # ended would be spooled with the broker up.
    if not await broker.wait_first_attempt(settings.broker_startup_wait):
        log.warning("starting without the broker", extra={"error": broker.last_error})
    reporter.start()
    if spool.pending():
        log.info("spool has records from a previous run", extra={"bytes": spool.size_bytes})
    try:
        yield
    finally:
        await reporter.stop()
        await publisher.close()
        await metric_path.publisher.close()
        await broker.stop()
        if lane is not None:
            lane.close()  # also one opened by a connect cycle that failed after it
        spool.close()
        metric_path.publisher.spool.close()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/yaml")


def create_app(settings: IngestSettings, deps: IngestDeps | None = None) -> web.Application:
    deps = deps or IngestDeps()
    app = service_app(
        "ingest", settings.common, deps.tracer_provider, client_max_size=settings.track_max_bytes
    )
    app[SETTINGS], app[DEPS] = settings, deps
    app[METRICS] = IngestMetrics(app_registry(app))
    app.router.add_get("/{tenant}/pixel/{email_id}.gif", pixel.pixel, name="pixel")
    app.router.add_get("/{tenant}/click/{email_id}", click.click, name="click")
    app.router.add_post("/v1/track", track.track, name="track")
    app.router.add_post("/v1/metrics", intake.otlp_metrics, name="otlp_metrics")
    app.router.add_post("/api/v1/write", intake.remote_write, name="remote_write")
    app.router.add_post("/v1/samples", intake.samples, name="samples")
    app.router.add_post("/v1/errors", errors.errors, name="errors")
    app.router.add_post("/v1/logs", errors.otlp_logs, name="otlp_logs")
    app.router.add_get("/v1/openapi.yaml", openapi)  # these routes, described
    if settings.pixel_fast_path:
        add_pixel_fast_path(app)
    app.cleanup_ctx.append(_broker_ctx)
    return app
