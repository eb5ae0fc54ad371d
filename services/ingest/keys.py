"""Typed application keys of the ingest service, and the objects behind them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from opentelemetry.trace import TracerProvider

from services.ingest.settings import IngestSettings
from shared.broker import Broker
from shared.probes import Health
from shared.publisher import BatchPublisher
from shared.spool import Spool


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class IngestDeps:
    """What tests may replace; production builds everything from settings."""

    clock: Callable[[], datetime] = field(default=_utcnow)
    # None: tracing off (no OTLP endpoint configured); __main__ passes the real one.
    tracer_provider: TracerProvider | None = None


@dataclass
class Hot:
    """What the request handlers touch, bundled so each handler does one lookup."""

    settings: IngestSettings
    publisher: BatchPublisher
    clock: Callable[[], datetime]


SETTINGS = web.AppKey("settings", IngestSettings)
DEPS = web.AppKey("deps", IngestDeps)
HEALTH = web.AppKey("ingest_health", Health)
BROKER = web.AppKey("broker", Broker)
SPOOL = web.AppKey("spool", Spool)
HOT = web.AppKey("hot", Hot)
