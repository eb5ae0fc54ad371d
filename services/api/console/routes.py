"""Every console route, added to the api's app by the composition root."""

from __future__ import annotations

from aiohttp import web

from services.api.console import alerts, health


def add_console_routes(app: web.Application) -> None:
    alerts.add_routes(app)
    health.add_routes(app)
