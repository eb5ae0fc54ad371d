"""Typed application keys of the api service, and the objects behind them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from opentelemetry.trace import TracerProvider

from services.api.metrics import ApiMetrics
from services.api.settings import ApiSettings
from shared.broker import Broker
from shared.db import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiDeps:
    """What tests may replace: the clock (default time ranges) and tracing."""

    now: Callable[[], datetime] = field(default=utcnow)
    # None: tracing off (no OTLP endpoint configured); __main__ passes the real one.
    tracer_provider: TracerProvider | None = None
    # False: no broker connection, so no self-reported metric events (unit-style tests).
    self_report: bool = True


SETTINGS = web.AppKey("settings", ApiSettings)
DEPS = web.AppKey("deps", ApiDeps)
DATABASE = web.AppKey("database", Database)
BROKER = web.AppKey("broker", Broker)
METRICS = web.AppKey("api_metrics", ApiMetrics)
