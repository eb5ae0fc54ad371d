"""Wiring notification delivery into the alerting app: its service, health check,
cleanup context and routes.

A module of its own, not the package's `__init__`: the alerting app's keys (keys.py)
are typed with this package's settings and deps, so the package itself must not import
them back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.alerting.keys import DATABASE, DEPS, HEALTH, NOTIFY_METRICS, SETTINGS
from services.alerting.notify.routes import NOTIFY, add_routes
from services.alerting.notify.service import NotifyService
from shared.telemetry import tracer_for


def setup_notify(app: web.Application) -> None:
    """Add notification delivery (consumers in a cleanup context) and its routes."""
    settings, deps = app[SETTINGS], app[DEPS]
    service = NotifyService(
        settings.notify,
        settings.common,
        deps.notify,
        tracer=tracer_for(deps.tracer_provider),
        metrics=app[NOTIFY_METRICS],
    )
    app[NOTIFY] = service
    app[HEALTH].add_check("notify", service.check)

    async def notify_ctx(app: web.Application) -> AsyncIterator[None]:
        await service.start(app[DATABASE])
        try:
            yield
        finally:
            await service.stop()

    app.cleanup_ctx.append(notify_ctx)
    add_routes(app)
