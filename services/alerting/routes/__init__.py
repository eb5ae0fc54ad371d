"""The management API of the alerting service (bearer key per tenant; see openapi.yaml)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.alerting.routes.alerts import add_alert_routes
from services.alerting.routes.am_alerts import add_am_alert_routes
from services.alerting.routes.channels import add_channel_routes
from services.alerting.routes.common import api_errors
from services.alerting.routes.rules import add_rule_routes
from services.alerting.routes.silences import add_silence_routes
from services.alerting.routes.stats import add_stats_routes
from services.alerting.routes.stream import add_stream_routes
from services.alerting.routes.timeline import add_timeline_routes

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.yaml"


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/yaml")


def add_routes(app: web.Application) -> None:
    app.middlewares.append(api_errors)
    add_stream_routes(app)  # before /api/v1/alerts/{fingerprint}
    add_rule_routes(app)
    add_alert_routes(app)
    add_timeline_routes(app)  # the console's reads: one alert's timeline, activity
    add_silence_routes(app)
    add_channel_routes(app)
    add_stats_routes(app)
    add_am_alert_routes(app)  # Alertmanager's receiving API (Prometheus, Grafana)
    app.router.add_get("/api/v1/openapi.yaml", openapi)
