"""Fixtures of the alerting tests: the service in-process on a fake clock, metric events
published to the real broker, and a tap on the notify exchange that sees every
notification the core publishes (independently of the notify consumers)."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from services.alerting.app import create_app
from services.alerting.evaluator import AlertEngine
from services.alerting.keys import CONSUMER, ENGINE, RELAY, AlertingDeps
from services.alerting.notify.settings import NotifySettings
from services.alerting.settings import AlertingSettings
from shared.auth import create_key
from shared.contracts import BATCH_V1, METRIC_V1, make_envelope
from shared.settings import CommonSettings
from shared.topology import CHANNEL_TYPES, Topology, declare
from tests.alerting.notify.conftest import Receiver
from tests.support.eventually import eventually

TENANT = "acme"


class FakeClock:
    """UTC now that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def alerting_settings(common: CommonSettings) -> AlertingSettings:
    """Ticks only when a test calls them (the start-up tick aside), notifications grouped
    at once, the relay polling fast; delivery gives up after one attempt (the tests read
    the notify exchange, not the receivers)."""
    return AlertingSettings(
        common=replace(common, service="alerting", metrics_interval=3600),
        eval_interval=3600,
        eval_on_arrival=0,  # ticks only when a test calls them
        group_wait=0,
        outbox_interval=0.05,
        external_url="http://alerting.test",
        notify=NotifySettings(max_attempts=1, egress_allow=(ipaddress.ip_network("127.0.0.0/8"),)),
    )


StartAlerting = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def start_alerting(
    start_app: Any, alerting_settings: AlertingSettings, clock: FakeClock
) -> StartAlerting:
    """Start the alerting app (real broker and database, the fake clock unless `deps`
    says otherwise) and wait until it is ready."""

    async def start(
        settings: AlertingSettings | None = None,
        deps: AlertingDeps | None = None,
        **overrides: Any,
    ) -> TestClient:
        s = replace(settings or alerting_settings, **overrides)
        client: TestClient = await start_app(create_app(s, deps or AlertingDeps(clock=clock)))
        await ready(client)
        return client

    return start


async def ready(client: TestClient, timeout: float = 15.0) -> None:
    async def status() -> Any:
        resp = await client.get("/readyz")
        return resp.status, await resp.text()

    await eventually(status, lambda s: s[0] == 200, timeout=timeout, what="alerting /readyz 200")


def engine_of(client: TestClient) -> AlertEngine:
    assert client.app is not None
    return client.app[ENGINE]


@pytest.fixture
async def api_key(db: asyncpg.Connection) -> str:
    return await create_key(db, TENANT)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def metric_event(
    name: str,
    value: float,
    labels: dict[str, str] | None = None,
    *,
    at: datetime,
    tenant: str = TENANT,
    trace: dict[str, str] | None = None,
) -> dict[str, Any]:
    return make_envelope(
        str(uuid.uuid4()),
        METRIC_V1,
        tenant,
        at.isoformat(),
        at.isoformat(),
        {"name": name, "value": value, "labels": labels or {}},
        trace,
    )


Send = Callable[..., Awaitable[None]]


@pytest.fixture
async def send_metrics(amqp: aio_pika.abc.AbstractConnection, prefix: str) -> Send:
    """Publish one batch.v1 message of metric events to <prefix>.metrics, then wait
    until the alerting consumer of `client` took its samples."""
    channel = await amqp.channel(publisher_confirms=True)
    topo = Topology(prefix)

    async def send(
        client: TestClient, events: list[dict[str, Any]] | bytes, expect: int | None = None
    ) -> None:
        assert client.app is not None
        consumer = client.app[CONSUMER]
        before = consumer.messages
        exchange = await channel.get_exchange(topo.metrics_exchange)
        body = events if isinstance(events, bytes) else orjson.dumps(events)
        await exchange.publish(
            aio_pika.Message(body, type=BATCH_V1, message_id=str(uuid.uuid4())),
            routing_key="metric.test",
        )
        await eventually(
            lambda: _value(consumer.messages),
            lambda n: n > before,
            timeout=10,
            what="metric message consumed",
        )

    return send


async def _value(value: int) -> int:
    return value


@dataclass
class Tap:
    """Every message published to <prefix>.notify, in arrival order."""

    messages: list[aio_pika.abc.AbstractIncomingMessage] = field(default_factory=list)

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.body) for m in self.messages]

    async def wait(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async def count() -> int:
            return len(self.messages)

        await eventually(count, lambda c: c >= n, timeout=timeout, what=f"{n} notifications")
        return self.envelopes

    async def quiet(self, client: TestClient, expected: int) -> list[dict[str, Any]]:
        """Let the relay finish a pass, then check that exactly `expected` arrived."""
        assert client.app is not None
        relay = client.app[RELAY]
        await eventually(relay.pending, lambda n: n == 0, timeout=10, what="outbox empty")
        await asyncio.sleep(0.1)  # a duplicate, if any, would be in flight now
        assert len(self.messages) == expected, [e["data"]["status"] for e in self.envelopes]
        return self.envelopes


@pytest.fixture
async def notify_tap(amqp: aio_pika.abc.AbstractConnection, prefix: str) -> AsyncIterator[Tap]:
    channel = await amqp.channel()
    topo = Topology(prefix)
    await declare(channel, topo.spec().part(f"{prefix}.notify."))
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    exchange = await channel.get_exchange(topo.notify_exchange)
    for kind in CHANNEL_TYPES:
        await queue.bind(exchange, routing_key=kind)
    tap = Tap()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        tap.messages.append(message)
        await message.ack()

    tag = await queue.consume(on_message)
    yield tap
    await queue.cancel(tag)
    await channel.close()


async def add_channel(
    db: asyncpg.Connection, name: str, kind: str = "webhook", tenant: str = TENANT
) -> None:
    config = {"url": f"http://127.0.0.1:9/{name}"}
    await db.execute(
        "INSERT INTO alert_channels (tenant_id, name, type, config) VALUES ($1, $2, $3, $4::jsonb)",
        tenant,
        name,
        kind,
        orjson.dumps(config).decode(),
    )


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server standing in for a tenant's webhook subscriber (127.0.0.1, which
    the test settings' egress allow-list admits); see `add_webhook`."""
    receiver = Receiver()
    await receiver.start()
    yield receiver
    assert receiver.runner is not None
    await receiver.runner.cleanup()


async def add_webhook(db: asyncpg.Connection, name: str, receiver: Receiver) -> None:
    """A webhook channel of TENANT delivering to `receiver` (path /<name>)."""
    config = {"url": f"{receiver.url}/{name}"}
    await db.execute(
        "INSERT INTO alert_channels (tenant_id, name, type, config)"
        " VALUES ($1, $2, 'webhook', $3::jsonb)",
        TENANT,
        name,
        orjson.dumps(config).decode(),
    )


def webhook_alerts(receiver: Receiver) -> list[tuple[str, dict[str, Any]]]:
    """(notification status, its one alert) per request the receiver got, in order."""
    out = []
    for request in receiver.requests:
        body = request.json()
        (alert,) = body["alerts"]
        out.append((body["status"], alert))
    return out
