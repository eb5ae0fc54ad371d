"""Composition root of the writer service: `create_app(settings, deps=None)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aio_pika.abc import AbstractChannel
from aiohttp import web

from services.writer.brokercheck import BrokerCheck
from services.writer.consumer import HitConsumer
from services.writer.errors import error_text
from services.writer.keys import (
    BROKER,
    CONSUMER,
    DATABASE,
    DEPS,
    METRICS,
    SETTINGS,
    WriterDeps,
)
from services.writer.metrics import WriterMetrics
from services.writer.settings import WriterSettings
from services.writer.store import EventStore, PostgresEventStore
from shared.broker import Broker
from shared.db import Database
from shared.httpobs import HTTP_STATS
from shared.probes import HEALTH
from shared.prom import app_registry
from shared.selfreport import Collector, MetricReporter, Sample, broker_exchange
from shared.tasks import stop_task
from shared.telemetry import tracer_for
from shared.topology import Topology, declare_hits
from shared.webapp import service_app

log = logging.getLogger("belfry.writer")
OPENAPI = Path(__file__).resolve().parent / "openapi.yaml"


def _lag_figures(metrics: WriterMetrics) -> Collector:
    """The writer's own self-reported figure: its lag (HitConsumer.lag_seconds), read
    from the app's gauge at each collect."""

    async def collect() -> list[Sample]:
        return [Sample("belfry_writer_lag_seconds", metrics.lag())]

    return collect


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = Database(app[SETTINGS].common.database_url)
    app[DATABASE] = db
    app[HEALTH].add_check("database", db.check)
    yield
    await db.close()


def _new_consumer(app: web.Application, store: EventStore) -> HitConsumer:
    """The app's consumer, counting into the app's metrics."""
    deps = app[DEPS]
    return HitConsumer(
        app[SETTINGS],
        store,
        sleep=deps.sleep,
        tracer=tracer_for(deps.tracer_provider),
        metrics=app[METRICS],
    )


async def _consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, metrics = app[SETTINGS], app[METRICS]
    store = app[DEPS].store or PostgresEventStore(app[DATABASE], migrate=settings.migrate_on_start)
    consumer = _new_consumer(app, store)
    broker = Broker(settings.common.amqp_url, "belfry-writer")
    topo = Topology(settings.common.prefix)
    tags: dict[str, str] = {}

    async def on_connect(channel: AbstractChannel) -> None:
        declared = await declare_hits(channel, topo)
        consumer.dead_letters = declared.dead_letters
        await channel.set_qos(prefetch_count=settings.prefetch)
        tags["hits"] = await declared.writer_queue.consume(consumer.on_message)

    broker.on_connect(on_connect)
    broker.on_disconnect(consumer.on_disconnect)
    metrics.lag_seconds.set_function(consumer.lag_seconds)  # read at scrape and report

    async def inserts_check() -> str | None:
        return f"inserts failing: {consumer.db_error}" if consumer.db_error else None

    checks = BrokerCheck(broker, topo.writer_queue, settings.check_timeout)
    health = app[HEALTH]
    health.add_check("broker", checks.check)
    health.add_check("inserts", inserts_check)
    app[BROKER] = broker
    app[CONSUMER] = consumer
    reporter = MetricReporter(
        "writer",
        broker_exchange(broker, topo.metrics_exchange),
        stats=app[HTTP_STATS],
        collectors=[
            _lag_figures(metrics),
            checks.queue_depths((topo.writer_queue, topo.writer_dlq), metrics.queue_messages),
        ],
        interval=settings.common.metrics_interval,
    )
    consumer.start()
    migrating = (
        asyncio.create_task(_migrate(store)) if isinstance(store, PostgresEventStore) else None
    )
    await broker.start()
    reporter.start()
    try:
        yield
    finally:
        await reporter.stop()
        # Stop deliveries first, then store and ack what we hold, then disconnect.
        channel = broker.channel
        if channel is not None and not channel.is_closed and "hits" in tags:
            try:
                queue = await channel.get_queue(topo.writer_queue, ensure=False)
                await queue.cancel(tags["hits"])
            except Exception:  # the channel may be gone already; held messages get redelivered
                pass
        await consumer.stop()
        await broker.stop()
        await stop_task(migrating)


async def _migrate(store: PostgresEventStore) -> None:
    """Apply migrations at start-up without holding up the probes; the first insert
    retries them if Postgres was down all along."""
    try:
        await store.prepare()
    except Exception as exc:
        log.warning("migrations not applied at start-up", extra={"error": error_text(exc)})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/yaml")


def create_app(settings: WriterSettings, deps: WriterDeps | None = None) -> web.Application:
    deps = deps or WriterDeps()
    app = service_app("writer", settings.common, deps.tracer_provider)
    app[SETTINGS], app[DEPS] = settings, deps
    app[METRICS] = WriterMetrics(app_registry(app))
    app.router.add_get("/v1/openapi.yaml", openapi)  # its port's routes, described
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_consumer_ctx)
    return app
