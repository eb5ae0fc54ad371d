"""Outages, simulated by cutting a TCP proxy between a service and the shared server."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import asyncpg

from services.ingest.keys import BROKER, SPOOL
from services.ingest.settings import IngestSettings
from services.writer.settings import WriterSettings
from tests.conftest import Started
from tests.integration.helpers import broker_up, ready, rows
from tests.support.eventually import eventually
from tests.support.tcpproxy import TcpProxy


async def readyz(client: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz")
    return resp.status, await resp.json()


async def test_broker_cut_spools_hits_and_replays_them_once(
    start_ingest: Started,
    start_writer: Started,
    ingest_settings: IngestSettings,
    rabbit_proxy: TcpProxy,
    db: asyncpg.Connection,
) -> None:
    writer = await start_writer()
    settings = replace(
        ingest_settings,
        common=replace(
            ingest_settings.common, amqp_url=rabbit_proxy.url_for(ingest_settings.common.amqp_url)
        ),
    )
    ingest = await start_ingest(settings)
    await ready(writer)
    await ready(ingest)
    app = ingest.app
    assert app is not None

    before = await asyncio.gather(*(ingest.get(f"/acme/pixel/b{i}.gif") for i in range(20)))
    assert {r.status for r in before} == {200}

    # Cut while hits are being published: in-flight batches and new ones go to the spool.
    during = [asyncio.ensure_future(ingest.get(f"/acme/pixel/d{i}.gif")) for i in range(40)]
    rabbit_proxy.cut()
    during += [asyncio.ensure_future(ingest.get(f"/acme/pixel/d{i}.gif")) for i in range(40, 80)]
    assert {r.status for r in await asyncio.gather(*during)} == {200}
    assert app[SPOOL].appended > 0, "nothing was spooled while the broker was cut"

    status, body = await readyz(ingest)
    assert status == 503
    assert "broker" in body["reasons"]
    assert (await ingest.get("/livez")).status == 200

    # The batch API still accepts while the spool has room.
    resp = await ingest.post(
        "/v1/track", json=[{"type": "open", "tenant": "acme", "email_id": "t1"}]
    )
    assert resp.status == 202

    rabbit_proxy.heal()
    await broker_up(ingest)
    stored = await rows(db, 101, timeout=30)
    assert len(stored) == 101
    assert len({r["id"] for r in stored}) == 101
    await eventually(lambda: _pending(app), lambda p: not p, what="spool drained")
    assert app[SPOOL].replayed > 0


async def _pending(app: Any) -> bool:
    return bool(app[SPOOL].pending())


async def test_spool_full_makes_track_answer_503_but_pixel_still_served(
    start_ingest: Started, ingest_settings: IngestSettings, rabbit_proxy: TcpProxy
) -> None:
    settings = replace(
        ingest_settings,
        spool_max_bytes=2048,
        common=replace(
            ingest_settings.common, amqp_url=rabbit_proxy.url_for(ingest_settings.common.amqp_url)
        ),
    )
    ingest = await start_ingest(settings)
    await ready(ingest)
    rabbit_proxy.cut()
    app = ingest.app
    assert app is not None
    await eventually(lambda: _available(app), lambda up: not up, what="broker marked down")
    # Fill the spool with hits the mail client still sees served.
    for i in range(30):
        resp = await ingest.get(f"/acme/pixel/f{i}.gif")
        assert resp.status == 200
    assert app[SPOOL].full or app[SPOOL].size_bytes > 1500
    resp = await ingest.post(
        "/v1/track", json=[{"type": "open", "tenant": "acme", "email_id": "x"}] * 20
    )
    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    assert "error" in await resp.json()
    status, body = await readyz(ingest)
    assert status == 503
    assert set(body["reasons"]) >= {"broker"}


async def _available(app: Any) -> bool:
    return bool(app[BROKER].available)


async def test_database_cut_makes_writer_unready_and_loses_nothing(
    start_ingest: Started,
    start_writer: Started,
    writer_settings: WriterSettings,
    pg_proxy: TcpProxy,
    db: asyncpg.Connection,
) -> None:
    settings = replace(
        writer_settings,
        backoff_min=0.05,
        backoff_max=0.3,
        common=replace(
            writer_settings.common,
            database_url=pg_proxy.url_for(writer_settings.common.database_url),
        ),
    )
    writer = await start_writer(settings)
    ingest = await start_ingest()
    await ready(writer)
    await ready(ingest)
    resp = await ingest.get("/acme/pixel/first.gif")
    assert resp.status == 200
    await rows(db, 1)

    pg_proxy.cut()
    sent = await asyncio.gather(*(ingest.get(f"/acme/pixel/c{i}.gif") for i in range(30)))
    assert {r.status for r in sent} == {200}

    async def writer_ready() -> tuple[int, dict[str, Any]]:
        return await readyz(writer)

    _, body = await eventually(writer_ready, lambda r: r[0] == 503, what="writer not ready")
    assert "database" in body["reasons"] or "inserts" in body["reasons"]
    assert (await writer.get("/livez")).status == 200

    pg_proxy.heal()
    stored = await rows(db, 31, timeout=30)
    assert len(stored) == 31
    assert len({r["id"] for r in stored}) == 31
    await ready(writer)
