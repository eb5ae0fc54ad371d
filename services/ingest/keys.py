"""Typed application keys of the ingest service, and the objects behind them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from opentelemetry.trace import TracerProvider

from services.ingest.intake.limits import TenantLimits
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import BatchPublisher
from services.ingest.publishlane import HitsLane
from services.ingest.settings import IngestSettings
from services.ingest.spool import Spool
from shared.broker import Broker
from shared.probes import HEALTH as HEALTH  # re-exported: add_probe_routes sets it


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class IngestDeps:
    """What tests may replace; production builds everything from settings."""

    clock: Callable[[], datetime] = field(default=_utcnow)
    # None: tracing off (no OTLP endpoint configured); __main__ passes the real one.
    tracer_provider: TracerProvider | None = None
    # The metric intake's rate limits and series idle times run on this.
    monotonic: Callable[[], float] = time.monotonic


@dataclass(slots=True)
class Hot:
    """What the request handlers touch, bundled so each handler does one lookup."""

    settings: IngestSettings
    publisher: BatchPublisher
    clock: Callable[[], datetime]
    metrics: IngestMetrics  # the app's, as METRICS: no second lookup per hit


@dataclass
class Intake:
    """What the metric intake routes touch: their own publisher (the metrics exchange,
    its own spool) and the per-tenant limits of this process."""

    settings: IngestSettings
    publisher: BatchPublisher
    limits: TenantLimits
    broker: Broker
    metrics: IngestMetrics


SETTINGS = web.AppKey("settings", IngestSettings)
DEPS = web.AppKey("deps", IngestDeps)
BROKER = web.AppKey("broker", Broker)
SPOOL = web.AppKey("spool", Spool)
# Set when hits publish on a lane of their own (publishlane.py; not with amqps:// or off).
PUBLISH_LANE = web.AppKey("publish_lane", HitsLane)
HOT = web.AppKey("hot", Hot)
INTAKE = web.AppKey("intake", Intake)
# Prometheus metrics on the app's registry (shared.prom), which its /metrics serves.
METRICS = web.AppKey("ingest_metrics", IngestMetrics)
