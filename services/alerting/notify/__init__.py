"""Alert notification delivery: one consumer per channel type, retries through delay
queues, the egress (SSRF) guard, the delivery log and its API. See README.md here.

The alerting service calls `setup_notify(app)` once, after its own database context is
registered (delivery uses `DATABASE`) and before the app starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.alerting.notify.metrics import failure_figures

__all__ = ["failure_figures", "setup_notify"]


def setup_notify(app: web.Application) -> None:
    """Add notification delivery (consumers in a cleanup context) and its routes."""
    # Imported here: keys.py imports this package's settings and deps, so importing it
    # at module level would be circular.
    from services.alerting.keys import DATABASE, DEPS, HEALTH, SETTINGS
    from services.alerting.notify.routes import NOTIFY, add_routes
    from services.alerting.notify.service import NotifyService
    from shared.telemetry import tracer_for

    settings, deps = app[SETTINGS], app[DEPS]
    service = NotifyService(
        settings.notify,
        settings.common,
        deps.notify,
        tracer=tracer_for(deps.tracer_provider),
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
