"""The answers the running api gives are what its contract types (and so its OpenAPI
document) say: each converts strictly into its documented type. The fuzzer checks the
routes its tenant reaches; this covers the ones it cannot (the operators' console) and
answers with data in them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import orjson

from services.api import contracts as c
from services.api import contracts_answers as a
from shared import probe_contracts as probes
from shared.topology import Topology
from tests.api.conftest import Row, bearer, new_tenant, seed_email, seed_events
from tests.api.test_console_health import declared, nowhere
from tests.conftest import Started

NOW = datetime.now(UTC).replace(microsecond=0)


async def answer(api: Any, path: str, key: str | None, method: str = "GET", **kw: Any) -> Any:
    headers = bearer(key) if key else {}
    async with api.request(method, path, headers=headers, **kw) as resp:
        assert resp.status < 400, (path, resp.status, await resp.text())
        return orjson.loads(await resp.read())


def typed(doc: Any, cls: type[msgspec.Struct]) -> None:
    msgspec.convert(doc, cls, strict=True)


async def test_tenant_answers_convert_into_their_types(
    db: asyncpg.Connection, start_api: Started
) -> None:
    key = await new_tenant(db, "acme")
    api = await start_api()
    created = await answer(
        api, "/acme/emails", key, "POST", json={"subject": "Hi", "links": ["https://x.test/"]}
    )
    typed(created, c.EmailCreated)
    email_id = created["email_id"]
    await seed_email(db, "acme", "e1", NOW - timedelta(days=1))
    await seed_events(
        db,
        [
            Row("acme", "e1", "open", NOW - timedelta(hours=3)),
            Row("acme", "e1", "click", NOW - timedelta(hours=2), url="https://x.test/"),
            Row("acme", "e1", "open", NOW - timedelta(hours=1), "machine", "scanner"),
        ],
    )
    error_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO errors (id, occurred_at, received_at, tenant_id, fingerprint, type,"
        " message, labels) VALUES ($1, $2, $2, 'acme', 'fp1', 'TypeError', 'boom', $3)",
        error_id,
        NOW - timedelta(minutes=5),
        '{"service": "checkout"}',
    )
    tenant_routes: list[tuple[str, type[msgspec.Struct]]] = [
        (f"/acme/errors/{error_id}", a.ErrorEvent),
        ("/acme/errors/fingerprint/fp1", a.ErrorGroup),
        ("/acme/emails", c.Emails),
        (f"/acme/emails/{email_id}", c.EmailDetail),
        (f"/acme/click-url/{email_id}?url=https://x.test/a", c.ClickUrl),
        ("/acme/settings", c.Settings),
        ("/acme/stats", a.Stats),
        ("/acme/stats?bucket=day&email_id=e1", a.Stats),
        ("/acme/errors/stats", a.ErrorStats),
    ]
    for path, cls in tenant_routes:
        doc = await answer(api, path, key)
        typed(doc, cls)
        if cls is a.ErrorStats:
            assert doc["groups"], doc  # a group, with its sample
    typed(await answer(api, "/acme/settings", key, "PUT", json={"ip_mode": "none"}), c.Settings)
    probe_routes: list[tuple[str, type[msgspec.Struct]]] = [
        ("/livez", probes.Status),
        ("/readyz", probes.Status),
        ("/health", probes.Health),
        ("/health/detailed", probes.HealthDetailed),
    ]
    for path, cls in probe_routes:
        typed(await answer(api, path, None), cls)


async def test_console_answers_convert_into_their_types(
    db: asyncpg.Connection, start_api: Started, amqp: Any, prefix: str
) -> None:
    key = await new_tenant(db, "belfry")
    api = await start_api(console=nowhere())
    await declared(amqp, prefix)
    dlq = Topology(prefix).alerting_dlq
    typed(await answer(api, "/console/api/health", key), a.ConsoleHealth)
    typed(await answer(api, f"/console/api/dead-letters/{dlq}", key), a.DeadLetters)
    replay = f"/console/api/dead-letters/{dlq}/replay"
    typed(await answer(api, replay, key, "POST", json={"confirm": True}), a.Replayed)
    purge = f"/console/api/dead-letters/{dlq}/purge"
    typed(await answer(api, purge, key, "POST", json={"confirm": True}), a.Purged)
