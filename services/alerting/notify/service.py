"""NotifyService: the delivery side of the alerting service, started and stopped as one.

Per channel type: its own supervised AMQP connection (shared.broker.Broker), consumer and
prefetch window, so one slow or failing channel type never blocks another. One HTTP
session, whose connector checks every address against the egress policy, serves the
HTTP channel types; the email channel applies the same policy to its own connections.
With an Alertmanager consumer, `AlertmanagerResender` keeps the active alerts alive there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import aiohttp
import orjson
from aiohttp.resolver import DefaultResolver

from services.alerting.notify.channels import RateLimiter, SendContext
from services.alerting.notify.config import CHANNEL_TYPES
from services.alerting.notify.consumer import ATTEMPT_HEADER, NotifyConsumer
from services.alerting.notify.delivery import Deliverer
from services.alerting.notify.deps import NotifyDeps
from services.alerting.notify.metrics import NotifyMetrics, unserved
from services.alerting.notify.resend import AlertmanagerResender
from services.alerting.notify.settings import NotifySettings
from services.alerting.notify.ssrf import EgressPolicy, guarded_connector
from services.alerting.notify.store import DeliveryStore
from shared.broker import Broker
from shared.contracts import ALERT_NOTIFICATION_V1
from shared.db import Database
from shared.settings import CommonSettings
from shared.topology import Topology
from shared.tracing import inject_headers

log = logging.getLogger("belfry.alerting.notify")


class ReplayError(Exception):
    """Why a replay can't happen: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class NotifyService:
    def __init__(
        self,
        settings: NotifySettings,
        common: CommonSettings,
        deps: NotifyDeps | None = None,
        *,
        tracer: Any = None,
        channel_types: tuple[str, ...] = CHANNEL_TYPES,
        metrics: NotifyMetrics | None = None,
    ) -> None:
        """`metrics`: the app's (shared.prom); by default a set served nowhere (tests)."""
        self.settings = settings
        self.metrics = metrics or unserved()
        self.common = common
        self.deps = deps or NotifyDeps()
        self.tracer = tracer
        self.channel_types = channel_types
        self.topo = Topology(common.prefix)
        self.policy = EgressPolicy(settings.egress_allow)
        self.store: DeliveryStore | None = None
        self.session: aiohttp.ClientSession | None = None
        self.brokers: dict[str, Broker] = {}
        self.consumers: dict[str, NotifyConsumer] = {}
        self._smtp_resolver: Any = None  # DNS of the email channel (the connector has its own)
        self.resender: AlertmanagerResender | None = None

    async def start(self, database: Database) -> None:
        self.store = DeliveryStore(database)
        if self.deps.resolver is None:
            self._smtp_resolver = DefaultResolver()
        connector = guarded_connector(
            self.policy,
            self.deps.resolver,
            ssl=self.deps.ssl_context if self.deps.ssl_context is not None else True,
            limit=100,
            limit_per_host=10,
        )
        self.session = aiohttp.ClientSession(
            connector=connector, trust_env=False, auto_decompress=False
        )
        for kind in self.channel_types:
            context = SendContext(
                settings=self.settings,
                session=self.session,
                clock=self.deps.clock,
                sleep=self.deps.sleep,
                ssl_context=self.deps.ssl_context,
                egress=self.policy,
                resolver=self.deps.resolver or self._smtp_resolver,
                limiter=(
                    RateLimiter(self.settings.slack_min_interval, self.deps.clock, self.deps.sleep)
                    if kind == "slack"
                    else None
                ),
            )
            deliverer = Deliverer(
                kind, self.store, context, self.deps.rng, self.tracer, metrics=self.metrics
            )
            consumer = NotifyConsumer(
                kind,
                self.topo,
                deliverer,
                self.settings,
                rng=self.deps.rng,
                metrics=self.metrics,
                tracer=self.tracer,
            )
            broker = Broker(self.common.amqp_url, f"belfry-{self.common.service}-notify-{kind}")
            broker.on_connect(consumer.on_connect)
            broker.on_disconnect(consumer.on_disconnect)
            self.consumers[kind] = consumer
            self.brokers[kind] = broker
            await broker.start()
            if kind == "alertmanager":
                self.resender = AlertmanagerResender(self.store, context)
                self.resender.start()

    async def wait_available(self, timeout: float) -> bool:
        results = await asyncio.gather(*(b.wait_available(timeout) for b in self.brokers.values()))
        return all(results)

    async def check(self) -> str | None:
        """Readiness: every channel type's broker connection is up."""
        down = [k for k, b in self.brokers.items() if not b.available]
        if not down:
            return None
        reasons = {k: self.brokers[k].last_error for k in down}
        return f"notification consumers disconnected: {reasons}"

    async def stop(self, drain_timeout: float = 10.0) -> None:
        if self.resender is not None:
            await self.resender.stop()
        for consumer in self.consumers.values():
            await consumer.cancel()
        await asyncio.gather(*(c.drain(drain_timeout) for c in self.consumers.values()))
        for broker in self.brokers.values():
            await broker.stop()
        if self.session is not None:
            await self.session.close()
        if self._smtp_resolver is not None:
            await self._smtp_resolver.close()

    async def replay(self, tenant: str, notification_id: str) -> None:
        """Send a failed (or refused) notification again, attempts counted afresh, with
        the same notification id (hence the same webhook-id)."""
        if self.store is None:
            raise ReplayError(503, "notification delivery is not running")
        status = await self.store.status(tenant, notification_id)
        if status is None:
            raise ReplayError(404, "notification not found")
        if status not in ("failed", "refused"):
            raise ReplayError(
                409, f"only failed notifications can be replayed; this one is {status}"
            )
        envelope = await self.store.reopen(tenant, notification_id)
        if envelope is None:
            raise ReplayError(409, "the notification is no longer failed")
        kind = str(envelope.get("data", {}).get("channel_type", ""))
        broker = self.brokers.get(kind)
        try:
            if broker is None or not broker.available or broker.channel is None:
                raise ConnectionError("broker unavailable")
            exchange = await broker.channel.get_exchange(self.topo.notify_exchange, ensure=False)
            headers: dict[str, Any] = {ATTEMPT_HEADER: 1, "x-belfry-replay": 1}
            inject_headers(headers)
            await exchange.publish(
                aio_pika.Message(
                    orjson.dumps(envelope),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    type=str(envelope.get("type") or ALERT_NOTIFICATION_V1),
                    headers=headers,
                ),
                routing_key=kind,
            )
        except Exception as exc:
            await self.store.restore(tenant, notification_id, status)
            log.warning("replay not published", extra={"error": str(exc)})
            raise ReplayError(503, "the broker is unavailable; try again") from exc
