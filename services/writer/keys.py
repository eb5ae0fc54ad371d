"""Typed application keys of the writer service, and the objects behind them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.trace import TracerProvider

from services.writer.consumer import HitConsumer
from services.writer.metrics import WriterMetrics
from services.writer.settings import WriterSettings
from services.writer.store import EventStore
from shared.broker import Broker
from shared.db import Database


@dataclass
class WriterDeps:
    """What tests may replace: the store (a fake needs no Postgres) and the backoff sleep."""

    store: EventStore | None = None
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    # None: tracing off (no OTLP endpoint configured); __main__ passes the real one.
    tracer_provider: TracerProvider | None = None


SETTINGS = web.AppKey("settings", WriterSettings)
DEPS = web.AppKey("deps", WriterDeps)
DATABASE = web.AppKey("database", Database)
BROKER = web.AppKey("broker", Broker)
CONSUMER = web.AppKey("consumer", HitConsumer)
METRICS = web.AppKey("writer_metrics", WriterMetrics)
