"""The egress guard at delivery time: internal addresses are refused before any
connection, recorded as `refused`, not retried; the check is on the resolved address, so
a hostname that resolves inward (DNS rebinding) is refused too — for HTTP channels and
SMTP relays alike. Connection failures read the same whatever listens on the port; the
API refuses internal destinations when a channel is saved; a tenant's refused channel
counts on the tenant side, not in the figures that page Belfry's operators."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aio_pika
import asyncpg
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from services.alerting.notify.deps import NotifyDeps
from services.alerting.notify.metrics import NotifyMetrics
from services.alerting.notify.settings import NotifySettings
from shared.auth import create_key
from tests.alerting.conftest import StartAlerting, auth
from tests.alerting.notify.conftest import (
    LOOPBACK,
    AddChannel,
    Inbox,
    Publish,
    StartNotify,
    attempts,
    dead_letters,
    delivery,
    notification,
)
from tests.support.processes import free_port


def refused(metrics: NotifyMetrics, channel_type: str, owner: str) -> float:
    """Refusals counted by one service (its own metrics: they start at zero)."""
    return float(metrics.notifications.labels(channel_type, "refused", owner)._value.get())


async def figures(metrics: NotifyMetrics) -> dict[str, float]:
    """The self-reported failure figures of this round, by owner."""
    return {s.labels["owner"]: s.value for s in await metrics.failure_figures()}


class FixedResolver(AbstractResolver):
    """DNS that answers every name with one address (a rebinding attacker's DNS)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=self.address,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


async def test_metadata_and_private_addresses_are_refused_and_recorded(
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
    notify_channel: aio_pika.abc.AbstractChannel,
    prefix: str,
) -> None:
    await add_channel("meta", "webhook", {"url": "http://169.254.169.254/latest/meta-data/"})
    await add_channel("lan", "webhook", {"url": "http://10.0.0.1:8080/hook"})
    service = await start_notify(max_attempts=5)
    for name in ("meta", "lan"):
        env = notification(name, "webhook")
        nid = env["data"]["notification_id"]
        await publish(env)
        row = await delivery(db, nid, "refused")
        assert row["attempts"] == 1 and "refused by the egress policy" in row["last_error"]
        (attempt,) = await attempts(db, nid)
        assert attempt["outcome"] == "refused" and attempt["status_code"] is None
        # Refused before connecting: no connect timeout was waited for (10.0.0.1 would
        # hang until the request timeout if a SYN went out).
        assert attempt["latency_ms"] < 500
    # A tenant's channel: the tenant-side figures move, not those that page operators.
    assert refused(service.metrics, "webhook", "tenant") == 2
    assert refused(service.metrics, "webhook", "belfry") == 0
    assert await figures(service.metrics) == {"tenant": 2, "belfry": 0}
    dead = await dead_letters(notify_channel, prefix, "webhook", 2)
    assert all((d.headers or {})["x-belfry-outcome"] == "refused" for d in dead)


async def test_guard_checks_the_resolved_address_with_no_connection_attempt(
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    # A real listener on loopback that counts connections; the channel names a public-
    # looking host whose DNS answers 127.0.0.1, and no allow-list admits loopback.
    accepted: list[Any] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resolver = FixedResolver("127.0.0.1")
    try:
        await add_channel("rebind", "webhook", {"url": f"http://hooks.example.com:{port}/x"})
        await start_notify(deps=NotifyDeps(resolver=resolver), egress_allow=())
        env = notification("rebind", "webhook")
        await publish(env)
        row = await delivery(db, env["data"]["notification_id"], "refused")
        # The kind of address, not the address: a name's resolution is not told.
        assert row["last_error"] == "connection refused by the egress policy (loopback)"
        assert resolver.asked == ["hooks.example.com"]
        assert accepted == []
    finally:
        server.close()
        await server.wait_closed()


async def test_belfrys_own_channel_refused_counts_for_the_operators(
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    # Belfry's own tenant (its rule pack notifies `belfry-ops`): operators must know.
    await add_channel("belfry-ops", "webhook", {"url": "http://10.0.0.1/hook"}, tenant="belfry")
    service = await start_notify()
    env = notification("belfry-ops", "webhook", tenant="belfry")
    await publish(env)
    await delivery(db, env["data"]["notification_id"], "refused")
    assert refused(service.metrics, "webhook", "belfry") == 1
    assert await figures(service.metrics) == {"tenant": 0, "belfry": 1}


def email_config(host: str, port: float) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "tls": "none",
        "from": "belfry@example.com",
        "to": ["oncall@example.com"],
    }


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", False),
        ("smtp.example.com", False),  # DNS answers 127.0.0.1
        ("127.0.0.1", True),
        ("smtp.example.com", True),
    ],
)
async def test_email_to_an_internal_smtp_server_is_refused_unless_allow_listed(
    host: str,
    allowed: bool,
    smtp_inbox: Inbox,
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
) -> None:
    resolver = FixedResolver("127.0.0.1")
    await add_channel("mail", "email", email_config(host, smtp_inbox.port))
    await start_notify(
        deps=NotifyDeps(resolver=resolver),
        types=("email",),
        egress_allow=LOOPBACK if allowed else (),
    )
    env = notification("mail", "email")
    nid = env["data"]["notification_id"]
    await publish(env)
    if allowed:
        # Connected to the checked address; the configured name is kept for SMTP/TLS.
        await delivery(db, nid, "delivered")
        assert len(smtp_inbox.messages) == 1
    else:
        row = await delivery(db, nid, "refused")
        assert row["attempts"] == 1
        assert row["last_error"] == "connection refused by the egress policy (loopback)"
        assert smtp_inbox.connections == 0 and smtp_inbox.messages == []
    assert resolver.asked == [host]


async def test_email_connection_errors_do_not_tell_what_listens_inside(
    start_notify: StartNotify,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Admitted by the allow-list (loopback here), a closed port, Postgres, RabbitMQ and
    # a server with a non-SMTP greeting must all read the same in the delivery log.
    async def ssh_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        await writer.drain()
        await reader.read(1024)
        writer.close()

    banner = await asyncio.start_server(ssh_like, "127.0.0.1", 0)
    targets = {
        "closed": free_port(),
        "postgres": 5432,
        "rabbitmq": 5672,
        "ssh": banner.sockets[0].getsockname()[1],
    }
    try:
        for name, port in targets.items():
            await add_channel(name, "email", email_config("127.0.0.1", port))
        await start_notify(types=("email",), max_attempts=1, request_timeout=0.5)
        envs = {name: notification(name, "email") for name in targets}
        for env in envs.values():
            await publish(env)
        rows = {
            name: await delivery(db, env["data"]["notification_id"], "failed")
            for name, env in envs.items()
        }
    finally:
        banner.close()
        await banner.wait_closed()
    errors = {name: row["last_error"] for name, row in rows.items()}
    assert set(errors.values()) == {"connection failed (gave up after 1 attempts)"}, errors
    for env in envs.values():
        (attempt,) = await attempts(db, env["data"]["notification_id"])
        assert attempt["error"] == errors["closed"] and attempt["status_code"] is None
    logged = [
        str(getattr(r, "error", ""))
        for r in caplog.records
        if r.name.startswith("belfry.alerting") and r.levelno >= logging.INFO
    ]
    assert all(e in ("", "None", errors["closed"]) for e in logged), logged


async def test_channel_api_refuses_internal_destinations_naming_the_field(
    start_alerting: StartAlerting, api_key: str
) -> None:
    # No allow-list: every spelling of an internal address is a 400 on its field.
    client = await start_alerting(notify=NotifySettings(max_attempts=1))
    h = auth(api_key)
    urls = [
        "http://127.1/hook",
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://0x7f.1/hook",
        "http://10.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[2002:7f00:1::]/hook",
        "http://localhost:9000/hook",
    ]
    for i, url in enumerate(urls):
        body = {"name": f"w{i}", "type": "webhook", "config": {"url": url}}
        resp = await client.post("/api/v1/channels", json=body, headers=h)
        assert resp.status == 400, url
        fields = (await resp.json())["fields"]
        assert set(fields) == {"config.url"} and "egress policy" in fields["config.url"], url
    for i, host in enumerate(["127.0.0.1", "0x7f.1", "169.254.169.254", "fd00::1"]):
        body = {"name": f"m{i}", "type": "email", "config": email_config(host, 25)}
        resp = await client.post("/api/v1/channels", json=body, headers=h)
        assert resp.status == 400, host
        assert set((await resp.json())["fields"]) == {"config.host"}, host
    # A name is not resolved when the channel is saved (the connect-time guard sees it).
    ok = {"name": "named", "type": "email", "config": email_config("smtp.example.com", 25)}
    assert (await client.post("/api/v1/channels", json=ok, headers=h)).status == 201


async def test_channel_api_admits_what_the_allow_list_admits(
    start_alerting: StartAlerting, api_key: str
) -> None:
    client = await start_alerting()  # the fixture admits 127.0.0.0/8
    h = auth(api_key)
    body = {"name": "loop", "type": "webhook", "config": {"url": "http://127.1:9/hook"}}
    assert (await client.post("/api/v1/channels", json=body, headers=h)).status == 201
    body = {"name": "lan", "type": "webhook", "config": {"url": "http://10.0.0.1/hook"}}
    resp = await client.post("/api/v1/channels", json=body, headers=h)
    assert resp.status == 400 and set((await resp.json())["fields"]) == {"config.url"}


async def test_only_belfry_may_write_notifications_into_the_service_log(
    start_alerting: StartAlerting, api_key: str, db: asyncpg.Connection
) -> None:
    """The `log` channel writes into the operators' log: a tenant's alerts don't belong
    there, so only tenant `belfry` may create one."""
    client = await start_alerting()
    body = {"name": "ops", "type": "log", "config": {}}
    resp = await client.post("/api/v1/channels", json=body, headers=auth(api_key))
    assert resp.status == 400
    assert set((await resp.json())["fields"]) == {"type"}
    belfry_key = await create_key(db, "belfry")
    resp = await client.post("/api/v1/channels", json=body, headers=auth(belfry_key))
    assert resp.status == 201, await resp.text()


async def test_whole_numbers_written_as_floats_are_integers(
    start_alerting: StartAlerting, api_key: str
) -> None:
    """JSON has one number type: a client writing 25.0 for a port means the integer 25
    (JSON Schema's `integer`, which the OpenAPI document states); 25.5 stays refused."""
    client = await start_alerting()
    h = auth(api_key)
    body = {"name": "mail", "type": "email", "config": email_config("smtp.example.com", 25.0)}
    resp = await client.post("/api/v1/channels", json=body, headers=h)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["config"]["port"] == 25
    body = {"name": "half", "type": "email", "config": email_config("smtp.example.com", 25.5)}
    assert (await client.post("/api/v1/channels", json=body, headers=h)).status == 400
    rule = {"name": "x", "condition": "m > 1", "no_data": {"mode": "alert", "windows": 290.0}}
    resp = await client.post("/api/v1/rules", json=rule, headers=h)
    assert resp.status == 201, await resp.text()
