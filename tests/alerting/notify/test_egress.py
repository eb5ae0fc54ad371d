"""The egress guard at delivery time: internal addresses are refused before any
connection, recorded as `refused`, not retried; the check is on the resolved address, so
a hostname that resolves inward (DNS rebinding) is refused too."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aio_pika
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult

from services.alerting.notify import metrics
from services.alerting.notify.deps import NotifyDeps
from tests.alerting.notify.conftest import (
    AddChannel,
    Publish,
    StartNotify,
    attempts,
    dead_letters,
    delivery,
    notification,
)


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
    refused_before = float(metrics.NOTIFICATIONS.labels("webhook", "refused")._value.get())
    await start_notify(max_attempts=5)
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
    assert float(metrics.NOTIFICATIONS.labels("webhook", "refused")._value.get()) == (
        refused_before + 2
    )
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
        assert "127.0.0.1" in row["last_error"] and "loopback" in row["last_error"]
        assert resolver.asked == ["hooks.example.com"]
        assert accepted == []
    finally:
        server.close()
        await server.wait_closed()
