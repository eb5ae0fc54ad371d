"""Composition root of the alerting service: `create_app(settings, deps=None)`.

Cleanup contexts, in order: the database (migrations, the rule and channel files), the
core (broker connection, metric consumer, evaluation ticks, outbox relay, self-reports),
then notification delivery (`setup_notify`, last). Shutdown runs them backwards: delivery
stops, the consumer stops taking messages, a last relay pass publishes what is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aio_pika.abc import AbstractChannel
from aiohttp import web

from services.alerting import store
from services.alerting.consumer import MetricConsumer
from services.alerting.evaluator import AlertEngine
from services.alerting.files import load_channels_file, load_rules_file
from services.alerting.hub import TransitionHub
from services.alerting.keys import (
    BROKER,
    CONSUMER,
    DATABASE,
    DEPS,
    ENGINE,
    HEALTH,
    HUB,
    METRICS,
    NOTIFY_METRICS,
    RELAY,
    SETTINGS,
    AlertingDeps,
)
from services.alerting.leader import Consuming, EvaluatorLock, evaluate_while_leader
from services.alerting.metrics import AlertingMetrics
from services.alerting.notify.metrics import NotifyMetrics
from services.alerting.notify.wiring import setup_notify
from services.alerting.outbox import OutboxRelay
from services.alerting.routes import add_routes
from services.alerting.settings import AlertingSettings
from shared.broker import Broker, SideChannel
from shared.db import Database, apply_migrations
from shared.httpobs import HTTP_STATS
from shared.prom import app_registry
from shared.selfreport import MetricReporter, broker_exchange, side_queue_depth
from shared.tasks import stop_task
from shared.telemetry import tracer_for
from shared.topology import CHANNEL_TYPES, Topology, declare
from shared.webapp import service_app

log = logging.getLogger("belfry.alerting")


async def prepare(app: web.Application) -> None:
    """Migrations, then the rule and channel files into the database."""
    settings = app[SETTINGS]
    pool = await app[DATABASE].pool()
    async with pool.acquire() as conn:
        if settings.migrate_on_start:
            await apply_migrations(conn)
        if settings.rules_file:
            for rule in load_rules_file(settings.rules_file):
                await store.upsert_rule(conn, rule, source="file")
        if settings.channels_file:
            for channel in load_channels_file(settings.channels_file):
                await store.upsert_channel(conn, channel)


_PREPARED = web.AppKey("alerting_prepared", bool)
QUEUE_DEPTH_TIMEOUT = 5.0  # seconds for one round of queue depths in the self-reports


async def _prepare_once(app: web.Application) -> None:
    if not app.get(_PREPARED, False):
        await prepare(app)
        app[_PREPARED] = True


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = Database(app[SETTINGS].common.database_url)
    app[DATABASE] = db
    app[HEALTH].add_check("database", db.check)
    # Once now, so notify (next context) finds its tables; if Postgres is away the
    # engine's start-up loop retries.
    try:
        await asyncio.wait_for(_prepare_once(app), 15)
    except Exception as exc:
        log.warning("database not prepared at start-up", extra={"error": str(exc)[:300]})
    yield
    await db.close()


def _reporter(app: web.Application, broker: Broker, topo: Topology) -> MetricReporter:
    """The alerting service's self-reports, with its queues' depths and notify's failures."""
    queues = (
        topo.alerting_queue,
        topo.alerting_dlq,
        *(topo.notify_queue(kind) for kind in CHANNEL_TYPES),
        *(topo.notify_dlq(kind) for kind in CHANNEL_TYPES),
    )
    return MetricReporter(
        "alerting",
        broker_exchange(broker, topo.metrics_exchange),
        stats=app[HTTP_STATS],
        collectors=[
            # A channel of its own: a timed-out read never closes the consuming one.
            side_queue_depth(
                SideChannel(broker), queues, QUEUE_DEPTH_TIMEOUT, app[METRICS].queue_messages
            ),
            app[NOTIFY_METRICS].failure_figures,  # notify's belfry_notifications_failed
        ],
        interval=app[SETTINGS].common.metrics_interval,
    )


def _engine(app: web.Application, relay: OutboxRelay) -> AlertEngine:
    settings, deps = app[SETTINGS], app[DEPS]
    return AlertEngine(
        app[DATABASE],
        clock=deps.clock,
        group_wait=settings.group_wait,
        external_url=settings.external_url,
        hub=app[HUB],
        tracer=tracer_for(deps.tracer_provider),
        on_outbox=relay.wake,
        arrival_gap=settings.eval_on_arrival,
        metrics=app[METRICS],
    )


async def _core_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, deps = app[SETTINGS], app[DEPS]
    tracer = tracer_for(deps.tracer_provider)
    topo = Topology(settings.common.prefix)
    db = app[DATABASE]
    broker = Broker(settings.common.amqp_url, "belfry-alerting")
    relay = OutboxRelay(
        db,
        broker,
        topo,
        interval=settings.outbox_interval,
        tracer=tracer,
        clock=deps.clock,
        metrics=app[METRICS],
    )
    engine = _engine(app, relay)
    consumer = MetricConsumer(engine, topo, tracer, app[METRICS])
    consuming = Consuming(topo, consumer)
    lock = EvaluatorLock(settings.common.database_url, settings.common.prefix)
    spec = topo.spec()

    async def on_connect(channel: AbstractChannel) -> None:
        exchanges, _queues = await declare(channel, spec.part(topo.alerting_queue))
        await declare(channel, spec.part(f"{topo.notify_exchange}."))
        consumer.dead_letters = exchanges[topo.dead_letter_exchange]
        await channel.set_qos(prefetch_count=settings.prefetch)
        consuming.declared = channel
        await consuming.subscribe(channel)  # only while this instance evaluates

    broker.on_connect(on_connect)
    broker.on_available(relay.wake)

    async def engine_check() -> str | None:
        return None if engine.loaded else f"rules not loaded: {engine.last_error}"

    health = app[HEALTH]
    health.add_check("broker", broker.check)
    health.add_check("engine", engine_check)
    app[BROKER], app[RELAY], app[ENGINE], app[CONSUMER] = broker, relay, engine, consumer
    reporter = _reporter(app, broker, topo)
    leading = asyncio.create_task(
        evaluate_while_leader(
            lambda: _prepare_once(app), engine, lock, consuming, settings.eval_interval
        ),
        name="alerting-leader",
    )
    await broker.start()
    relay.start()
    reporter.start()
    try:
        yield
    finally:
        await reporter.stop()
        await consuming.stop()
        await stop_task(leading)
        await engine.stop()
        await relay.stop()  # a last pass: committed notifications go out
        await broker.stop()
        await lock.release()  # after the last relay pass: a standby takes over from here


def create_app(settings: AlertingSettings, deps: AlertingDeps | None = None) -> web.Application:
    deps = deps or AlertingDeps()
    app = service_app("alerting", settings.common, deps.tracer_provider)
    app[SETTINGS], app[DEPS] = settings, deps
    registry = app_registry(app)
    app[METRICS], app[NOTIFY_METRICS] = AlertingMetrics(registry), NotifyMetrics(registry)
    hub = TransitionHub()
    app[HUB] = hub

    async def close_streams(app: web.Application) -> None:
        hub.close()

    app.on_shutdown.append(close_streams)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_core_ctx)
    add_routes(app)
    setup_notify(app)
    return app
