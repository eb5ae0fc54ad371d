"""Typed application keys of the alerting service, and the dependency bundle behind them.

The notify sub-package (services/alerting/notify/) reads SETTINGS, DEPS, DATABASE,
HEALTH and NOTIFY_METRICS from here; these names are a fixed interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from opentelemetry.trace import TracerProvider

from services.alerting.consumer import MetricConsumer
from services.alerting.evaluator import AlertEngine
from services.alerting.hub import TransitionHub
from services.alerting.metrics import AlertingMetrics
from services.alerting.notify.deps import NotifyDeps
from services.alerting.notify.metrics import NotifyMetrics
from services.alerting.outbox import OutboxRelay
from services.alerting.settings import AlertingSettings
from shared.broker import Broker
from shared.db import Database
from shared.probes import HEALTH as HEALTH  # re-exported: add_probe_routes sets it


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AlertingDeps:
    """What tests may replace: the clock (a fake makes `for`/repeat/no-data instant),
    the tracer provider, and the notify helper's own dependencies."""

    clock: Callable[[], datetime] = field(default=utc_now)
    # None: tracing off (no OTLP endpoint configured); __main__ passes the real one.
    tracer_provider: TracerProvider | None = None
    notify: NotifyDeps = field(default_factory=NotifyDeps)


SETTINGS = web.AppKey("alerting_settings", AlertingSettings)
DEPS = web.AppKey("alerting_deps", AlertingDeps)
DATABASE = web.AppKey("alerting_database", Database)
# The core's own objects (not part of the notify interface).
ENGINE = web.AppKey("alerting_engine", AlertEngine)
BROKER = web.AppKey("alerting_broker", Broker)
RELAY = web.AppKey("alerting_relay", OutboxRelay)
CONSUMER = web.AppKey("alerting_consumer", MetricConsumer)
HUB = web.AppKey("alerting_hub", TransitionHub)
# Prometheus metrics on the app's registry (shared.prom); notify reads NOTIFY_METRICS.
METRICS = web.AppKey("alerting_metrics", AlertingMetrics)
NOTIFY_METRICS = web.AppKey("alerting_notify_metrics", NotifyMetrics)

__all__ = [
    "BROKER",
    "CONSUMER",
    "DATABASE",
    "DEPS",
    "ENGINE",
    "HEALTH",
    "HUB",
    "METRICS",
    "NOTIFY_METRICS",
    "RELAY",
    "SETTINGS",
    "AlertingDeps",
    "AlertingSettings",
    "utc_now",
]
