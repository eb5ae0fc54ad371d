"""Composition root of the api service: `create_app(settings, deps=None)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractChannel
from aiohttp import web

from services.api.console.routes import add_console_routes
from services.api.http import MAX_BODY, refuse_nul
from services.api.keys import BROKER, DATABASE, DEPS, METRICS, SETTINGS, ApiDeps
from services.api.metrics import ApiMetrics
from services.api.routes import dashboard, emails, errors, export, privacy, stats
from services.api.settings import ApiSettings
from shared.broker import Broker
from shared.db import UNAVAILABLE, Database, apply_migrations
from shared.httpobs import HTTP_STATS
from shared.probes import HEALTH
from shared.prom import app_registry
from shared.selfreport import MetricReporter, broker_exchange
from shared.tasks import stop_task
from shared.topology import Topology
from shared.webapp import service_app

log = logging.getLogger("belfry.api")

OPENAPI = Path(__file__).resolve().parent / "openapi.yaml"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def database_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UNAVAILABLE as exc:
        reason = f"database unavailable: {type(exc).__name__}"
    except asyncpg.UndefinedTableError:
        reason = "database not migrated yet"
    log.warning("request failed on the database", extra={"reason": reason})
    return web.Response(
        body=orjson.dumps({"error": reason}),
        status=503,
        content_type="application/json",
        headers={"Retry-After": "5"},
    )


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = Database(app[SETTINGS].common.database_url)
    app[DATABASE] = db
    app[HEALTH].add_check("database", db.check)
    migrating = asyncio.create_task(_migrate(db)) if app[SETTINGS].migrate_on_start else None
    yield
    await stop_task(migrating)  # before the pool it uses closes
    await db.close()


async def _migrate(db: Database) -> None:
    """Apply pending migrations without holding up the probes; `migrate` does it too."""
    try:
        pool = await db.pool()
        async with pool.acquire() as conn:
            await apply_migrations(conn)
    except Exception as exc:
        log.warning("migrations not applied at start-up", extra={"error": str(exc)})


async def _self_report_ctx(app: web.Application) -> AsyncIterator[None]:
    """Self-reported metric events: the api's only use of the broker, so a broker outage
    makes the api degraded (a soft check), never unready."""
    common = app[SETTINGS].common
    topo = Topology(common.prefix)
    broker = Broker(common.amqp_url, "belfry-api")

    async def on_connect(channel: AbstractChannel) -> None:
        await channel.declare_exchange(
            topo.metrics_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    broker.on_connect(on_connect)
    app[BROKER] = broker
    app[HEALTH].add_check("broker", broker.check, soft=True)
    reporter = MetricReporter(
        "api",
        broker_exchange(broker, topo.metrics_exchange),
        stats=app[HTTP_STATS],
        interval=common.metrics_interval,
    )
    await broker.start()
    reporter.start()
    try:
        yield
    finally:
        await reporter.stop()
        await broker.stop()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/yaml")


def create_app(settings: ApiSettings, deps: ApiDeps | None = None) -> web.Application:
    deps = deps or ApiDeps()
    app = service_app("api", settings.common, deps.tracer_provider, client_max_size=MAX_BODY)
    app[SETTINGS], app[DEPS] = settings, deps
    app[METRICS] = ApiMetrics(app_registry(app))
    app.middlewares.append(refuse_nul)
    app.middlewares.append(database_errors)
    app.cleanup_ctx.append(_database_ctx)
    if deps.self_report:
        app.cleanup_ctx.append(_self_report_ctx)
    r = app.router
    r.add_get("/api/v1/openapi.yaml", openapi)  # every route below, described
    # Little Bell's routes, same shapes.
    r.add_post("/{tenant}/emails", emails.create_email)
    r.add_get("/{tenant}/click-url/{email_id}", emails.click_url_route)
    r.add_get("/{tenant}/dashboard", dashboard.dashboard)
    # Belfry's.
    r.add_get("/{tenant}/emails", emails.list_emails)
    r.add_get("/{tenant}/emails/{email_id}", emails.get_email)
    r.add_get("/{tenant}/stats", stats.stats)
    r.add_get("/{tenant}/export.{format:csv|ndjson}", export.export)
    r.add_get("/{tenant}/settings", privacy.get_settings)
    # Error events (stats and fingerprint before {error_id}: first match wins).
    r.add_get("/{tenant}/errors/stats", errors.stats)
    r.add_get("/{tenant}/errors/fingerprint/{fingerprint}", errors.by_fingerprint)
    r.add_get("/{tenant}/errors/{error_id}", errors.get_error)
    r.add_put("/{tenant}/settings", privacy.put_settings)
    add_console_routes(app)
    return app
