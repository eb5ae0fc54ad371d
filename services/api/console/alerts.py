"""The console's alerts view (routes and the server-side calls behind them)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Nothing yet."""
