"""Postgres away while a notification arrives: the consumer can't read its channel, so
the message waits in the delay queue and is tried again; once the database is back it
is delivered exactly once — nothing lost, nothing sent twice. The failed handling is
Belfry's failure (owner="belfry"), whoever the tenant."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.alerting.notify.conftest import (
    AddChannel,
    Publish,
    Receiver,
    StartNotify,
    delivery,
    notification,
)
from tests.conftest import start_postgres_proxy
from tests.support.eventually import eventually


async def test_database_outage_delays_delivery_without_loss_or_duplicate(
    start_notify: StartNotify,
    receiver: Any,
    add_channel: AddChannel,
    publish: Publish,
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    hook: Receiver = await receiver()
    await add_channel("h", "webhook", {"url": hook.url})
    proxy = await start_postgres_proxy()
    try:
        service = await start_notify(database_url=proxy.url_for(database_url))
        proxy.cut()
        env = notification("h", "webhook")
        await publish(env)

        async def handler_retries() -> int:
            return sum(c.handler_failures for c in service.consumers.values())

        # The handler failed on the database at least twice: retried through the delay
        # queue, not acked away and not sent.
        await eventually(handler_retries, lambda n: n >= 2, what="handler retries")
        assert hook.requests == []
        errors = service.metrics.notifications.labels("webhook", "error", "belfry")
        assert errors._value.get() >= 2
        proxy.heal()
        row = await delivery(db, env["data"]["notification_id"], "delivered", timeout=15)
        assert row["attempts"] == 1
        (request,) = await hook.wait(1)
        assert request.headers["webhook-id"] == env["data"]["notification_id"]
    finally:
        await proxy.close()
