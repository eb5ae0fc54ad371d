"""Composition root of the alerting service: `create_app(settings, deps=None)`.

Cleanup contexts, in order: the database (migrations, the rule and channel files), the
core (broker connection, metric consumer, evaluation ticks, outbox relay, self-reports),
then notification delivery (`setup_notify`, last). Shutdown runs them backwards: delivery
stops, the consumer stops taking messages, a last relay pass publishes what is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    RELAY,
    SETTINGS,
    AlertingDeps,
)
from services.alerting.leader import EvaluatorLock
from services.alerting.notify import failure_figures, setup_notify
from services.alerting.outbox import OutboxRelay
from services.alerting.retrying import Failures
from services.alerting.routes import add_routes
from services.alerting.settings import AlertingSettings
from shared.broker import Broker
from shared.db import Database, apply_migrations
from shared.failures import error_text
from shared.httpobs import HTTP_STATS, add_observability
from shared.probes import Health, add_probe_routes
from shared.selfreport import MetricReporter, broker_channel, broker_exchange, queue_depth
from shared.tasks import stop_task
from shared.telemetry import tracer_for
from shared.topology import CHANNEL_TYPES, Topology, declare

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
            for ch in load_channels_file(settings.channels_file):
                await conn.execute(
                    """INSERT INTO alert_channels (tenant_id, name, type, config, enabled)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (tenant_id, name) DO UPDATE SET type = EXCLUDED.type,
                           config = EXCLUDED.config, enabled = EXCLUDED.enabled,
                           updated_at = now()""",
                    ch.tenant,
                    ch.name,
                    ch.type,
                    store.dumps(ch.config),
                    ch.enabled,
                )


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = Database(app[SETTINGS].common.database_url)
    app[DATABASE] = db
    app[HEALTH].add_check("database", db.check)
    # Once now, so notify (next context) finds its tables; if Postgres is away the
    # engine's start-up loop retries.
    try:
        await asyncio.wait_for(prepare(app), 15)
        app[_PREPARED] = True
    except Exception as exc:
        log.warning("database not prepared at start-up", extra={"error": str(exc)[:300]})
    yield
    await db.close()


_PREPARED = web.AppKey("alerting_prepared", bool)


# How often a standby instance tries to take the evaluator lock, and how often the holder
# checks that its lock connection is alive.
LOCK_POLL_SECONDS = 1.0
LOCK_CHECK_SECONDS = 5.0
STANDBY = "standby: another alerting instance holds the evaluator lock"


class _Consuming:
    """The metric-queue subscription, on only while this instance evaluates."""

    def __init__(self, topo: Topology, consumer: MetricConsumer) -> None:
        self.topo, self.consumer = topo, consumer
        self.active = False
        # The channel on_connect finished declaring on (the queue exists there).
        self.declared: AbstractChannel | None = None
        self._on: tuple[AbstractChannel, str] | None = None

    async def start(self) -> None:
        self.active = True
        await self.subscribe(self.declared)

    async def subscribe(self, channel: AbstractChannel | None) -> None:
        """Consume on `channel` (the current one; a reconnect brings a new one)."""
        if not self.active or channel is None or channel.is_closed:
            return
        if self._on is not None and self._on[0] is channel:
            return
        queue = await channel.get_queue(self.topo.alerting_queue, ensure=False)
        self._on = (channel, await queue.consume(self.consumer.on_message))

    async def stop(self) -> None:
        self.active = False
        on, self._on = self._on, None
        if on is not None and not on[0].is_closed:
            with contextlib.suppress(Exception):
                queue = await on[0].get_queue(self.topo.alerting_queue, ensure=False)
                await queue.cancel(on[1])


async def _evaluate_while_leader(
    app: web.Application,
    engine: AlertEngine,
    lock: EvaluatorLock,
    consuming: _Consuming,
    interval: float,
) -> None:
    """Forever: take the evaluator lock (else stay a standby), prepare and load, tick and
    consume while the lock is held; when it is lost, stop and start over."""
    failures = Failures(log, "alerting start-up (database)", base=0.5, cap=10.0)
    while True:
        try:
            if not await lock.try_acquire():
                engine.last_error = STANDBY
                await asyncio.sleep(LOCK_POLL_SECONDS)
                continue
            if not app.get(_PREPARED, False):
                await prepare(app)
                app[_PREPARED] = True
            await engine.load()
        except Exception as exc:
            engine.last_error = error_text(exc)[:300]
            await asyncio.sleep(failures.failed(exc))
            continue
        failures.succeeded()
        engine.start(interval)
        await consuming.start()
        log.info("evaluating: this instance holds the evaluator lock")
        while not lock.lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lock.lost.wait(), LOCK_CHECK_SECONDS)
            await lock.check()
        log.warning("evaluator lock lost: evaluation stops until it is taken again")
        await consuming.stop()
        await engine.stop()
        engine.loaded = False
        engine.last_error = "evaluator lock lost"


async def _core_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, deps = app[SETTINGS], app[DEPS]
    tracer = tracer_for(deps.tracer_provider)
    topo = Topology(settings.common.prefix)
    db = app[DATABASE]
    broker = Broker(settings.common.amqp_url, "belfry-alerting")
    relay = OutboxRelay(
        db, broker, topo, interval=settings.outbox_interval, tracer=tracer, clock=deps.clock
    )
    engine = AlertEngine(
        db,
        clock=deps.clock,
        group_wait=settings.group_wait,
        external_url=settings.external_url,
        hub=app[HUB],
        tracer=tracer,
        on_outbox=relay.wake,
        arrival_gap=settings.eval_on_arrival,
    )
    consumer = MetricConsumer(engine, topo, tracer)
    consuming = _Consuming(topo, consumer)
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
    reporter = MetricReporter(
        "alerting",
        broker_exchange(broker, topo.metrics_exchange),
        stats=app[HTTP_STATS],
        collectors=[
            queue_depth(
                broker_channel(broker),
                (
                    topo.alerting_queue,
                    topo.alerting_dlq,
                    *(topo.notify_queue(kind) for kind in CHANNEL_TYPES),
                    *(topo.notify_dlq(kind) for kind in CHANNEL_TYPES),
                ),
            ),
            failure_figures,  # notify's belfry_notifications_failed
        ],
        interval=settings.common.metrics_interval,
    )
    leading = asyncio.create_task(
        _evaluate_while_leader(app, engine, lock, consuming, settings.eval_interval),
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
    app = web.Application()
    app[SETTINGS] = settings
    app[DEPS] = deps = deps or AlertingDeps()
    add_observability(
        app,
        "alerting",
        tracer_for(deps.tracer_provider),
        settings.common.access_log_sample,
        settings.common.truncate_ips,
    )
    add_probe_routes(app, Health("alerting", settings.common.version))
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
