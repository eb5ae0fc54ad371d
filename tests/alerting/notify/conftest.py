"""Fixtures of the delivery tests: the notify consumers run in-process against the real
RabbitMQ and Postgres of tests/conftest.py; what lives outside Belfry (webhook receivers,
Slack, SMTP servers, Alertmanager) runs as a real server in the test."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from devtools.children import spawn
from devtools.ready import wait_http_ok
from services.alerting.notify.deps import NotifyDeps
from services.alerting.notify.service import NotifyService
from services.alerting.notify.settings import NotifySettings
from shared.contracts import ALERT_NOTIFICATION_V1, make_envelope, now_iso
from shared.db import Database
from shared.settings import CommonSettings
from shared.topology import Topology, TopologySpec, declare
from tests.support.eventually import eventually
from tests.support.processes import free_port

TENANT = "acme"
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
HAVE_ALERTMANAGER = ALERTMANAGER.exists()
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def notification(
    channel: str,
    channel_type: str,
    *,
    status: str = "firing",
    rule_id: str = "r-1",
    rule_name: str = "HighLatency",
    alerts: list[dict[str, Any]] | None = None,
    notification_id: str | None = None,
    trace: dict[str, str] | None = None,
    tenant: str = TENANT,
) -> dict[str, Any]:
    """An `alert.notification.v1` envelope as the alerting core publishes it."""
    alert = {
        "fingerprint": "fp-0123456789abcdef",
        "status": status,
        "labels": {"service": "ingest", "severity": "critical"},
        "annotations": {"summary": "p95 latency 1.4s > 1s", "description": "ingest is slow"},
        "starts_at": "2026-01-02T03:04:05+00:00",
        "ends_at": "2026-01-02T04:00:00+00:00" if status == "resolved" else None,
        "generator_url": "http://localhost:8082/alerts/fp-0123456789abcdef",
        "value": 1.4,
        "severity": "critical",
    }
    data = {
        "notification_id": notification_id or str(uuid.uuid4()),
        "channel": channel,
        "channel_type": channel_type,
        "rule_id": rule_id,
        "rule_name": rule_name,
        "status": status,
        "group_key": f"{rule_id}:{{}}",
        "group_labels": {"alertname": rule_name},
        "alerts": alerts or [alert],
    }
    return make_envelope(
        str(uuid.uuid4()), ALERT_NOTIFICATION_V1, tenant, now_iso(), now_iso(), data, trace
    )


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server standing in for a subscriber. `answers` is consumed one per
    request (status, headers); when empty, 200. With `hold` set, every request is
    recorded and then hangs until `hold` is released (the fixture releases it at the
    end of the test)."""

    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None
    hold: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            Received(time.monotonic(), request.path_qs, dict(request.headers), body)
        )
        if self.hold is not None:
            await self.hold.wait()
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def wait(self, n: int, timeout: float = 10.0) -> list[Received]:
        async def count() -> int:
            return len(self.requests)

        await eventually(count, lambda c: c >= n, timeout=timeout, what=f"{n} requests")
        return self.requests


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """`await receiver()` starts a subscriber; `await receiver(hanging=True)` one whose
    requests never get an answer while the test runs."""
    started: list[Receiver] = []

    async def start(hanging: bool = False) -> Receiver:
        r = Receiver(hold=asyncio.Event() if hanging else None)
        await r.start()
        started.append(r)
        return r

    yield start
    for r in started:
        if r.hold is not None:
            r.hold.set()
        assert r.runner is not None
        await r.runner.cleanup()


class Inbox:
    """aiosmtpd handler keeping what it received; `connections` counts EHLO greetings."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.connections = 0
        self.port = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd, no TLS) on 127.0.0.1 at `inbox.port`."""
    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def notify_settings() -> NotifySettings:
    """Tiny backoff so retry tests take milliseconds; loopback admitted (the receivers)."""
    return NotifySettings(
        max_attempts=3,
        backoff_base=0.02,
        backoff_factor=2.0,
        backoff_jitter=0.0,
        request_timeout=3.0,
        egress_allow=LOOPBACK,
        slack_min_interval=1.0,
    )


StartNotify = Callable[..., Awaitable[NotifyService]]


@pytest.fixture
async def start_notify(
    common: CommonSettings, notify_settings: NotifySettings
) -> AsyncIterator[StartNotify]:
    """Run NotifyService (all four consumers) until the test ends; stopped before the
    database and topology go (hence the `common` dependency)."""
    running: list[tuple[NotifyService, Database]] = []

    async def start(
        deps: NotifyDeps | None = None,
        tracer: Any = None,
        types: tuple[str, ...] = ("webhook",),
        database_url: str | None = None,
        **overrides: Any,
    ) -> NotifyService:
        """Consumers of `types` only (each is a connection and 7 quorum queues to
        declare: the suite stays fast); `database_url` e.g. through a TCP proxy."""
        settings = replace(notify_settings, **overrides)
        url = database_url or common.database_url
        service = NotifyService(
            settings,
            replace(common, service="alerting", database_url=url),
            deps or NotifyDeps(),
            tracer=tracer,
            channel_types=types,
        )
        database = Database(url)
        running.append((service, database))
        await service.start(database)
        assert await service.wait_available(15), await service.check()
        return service

    yield start
    for service, database in reversed(running):
        await service.stop(drain_timeout=5)
        await database.close()


@pytest.fixture
async def notify_channel(
    amqp: aio_pika.abc.AbstractConnection, prefix: str
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A publisher-confirm channel with the exchanges declared (the consumers declare
    their queues and bindings when they start, before anything is published)."""
    channel = await amqp.channel(publisher_confirms=True)
    await declare(channel, TopologySpec(Topology(prefix).spec().exchanges, (), ()))
    yield channel


Publish = Callable[..., Awaitable[None]]


@pytest.fixture
def publish(notify_channel: aio_pika.abc.AbstractChannel, prefix: str) -> Publish:
    async def send(envelope: Any, headers: dict[str, Any] | None = None) -> None:
        body = envelope if isinstance(envelope, bytes) else orjson.dumps(envelope)
        kind = envelope["data"]["channel_type"] if isinstance(envelope, dict) else "webhook"
        exchange = await notify_channel.get_exchange(Topology(prefix).notify_exchange)
        await exchange.publish(
            aio_pika.Message(
                body, headers=headers or {}, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=kind,
        )

    return send


AddChannel = Callable[..., Awaitable[None]]


@pytest.fixture
def add_channel(db: asyncpg.Connection) -> AddChannel:
    async def add(
        name: str, kind: str, config: dict[str, Any], enabled: bool = True, tenant: str = TENANT
    ) -> None:
        await db.execute(
            "INSERT INTO alert_channels (tenant_id, name, type, config, enabled)"
            " VALUES ($1, $2, $3, $4::jsonb, $5)",
            tenant,
            name,
            kind,
            orjson.dumps(config).decode(),
            enabled,
        )

    return add


async def delivery(
    db: asyncpg.Connection, notification_id: str, status: str, timeout: float = 10.0
) -> asyncpg.Record:
    """Wait until the delivery has `status`; returns its row."""

    async def row() -> Any:
        return await db.fetchrow(
            "SELECT * FROM notification_deliveries WHERE notification_id = $1", notification_id
        )

    found = await eventually(
        row,
        lambda r: r is not None and r["status"] == status,
        timeout=timeout,
        what=f"delivery {status}",
    )
    return found


async def attempts(db: asyncpg.Connection, notification_id: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT * FROM notification_attempts WHERE notification_id = $1 ORDER BY id",
            notification_id,
        )
    )


async def dead_letters(
    channel: aio_pika.abc.AbstractChannel, prefix: str, kind: str, n: int, timeout: float = 10.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.get_queue(Topology(prefix).notify_dlq(kind))
    got: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def take() -> int:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        return len(got)

    await eventually(take, lambda c: c >= n, timeout=timeout, what=f"{n} dead letters")
    return got


@contextlib.asynccontextmanager
async def run_alertmanager(
    tmp_path: Path, resolve_timeout: str | None = None
) -> AsyncIterator[str]:
    """A real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1, started and
    stopped by devtools (its log in tmp_path); its URL once ready. The test is skipped
    where it is not installed."""
    if not HAVE_ALERTMANAGER:
        pytest.skip(f"{ALERTMANAGER} is not installed (Debian package prometheus-alertmanager)")
    config = tmp_path / "alertmanager.yml"
    header = f"global:\n  resolve_timeout: {resolve_timeout}\n" if resolve_timeout else ""
    config.write_text(header + "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    port = free_port()
    argv = [
        str(ALERTMANAGER),
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    child = await spawn("alertmanager", argv, log=tmp_path / "alertmanager.log")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http_ok(f"{url}/-/ready", child, timeout=15, interval=0.05)
        yield url
    finally:
        await child.stop(timeout=10)
