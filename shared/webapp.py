"""The start every service's web app shares: the observability middleware (logs, traces,
HTTP metrics on the app's own Prometheus registry) and the probe routes with the app's
Health under shared.probes.HEALTH, for its context blocks to add their checks to."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from opentelemetry.trace import TracerProvider

from shared.httpobs import add_observability
from shared.probes import Health, add_probe_routes
from shared.settings import CommonSettings
from shared.telemetry import tracer_for


def service_app(
    service: str,
    common: CommonSettings,
    tracer_provider: TracerProvider | None,
    **application: Any,
) -> web.Application:
    """A new `web.Application(**application)` observed and probed as `service`."""
    app = web.Application(**application)
    add_observability(
        app, service, tracer_for(tracer_provider), common.access_log_sample, common.truncate_ips
    )
    add_probe_routes(app, Health(service, common.version))
    return app
