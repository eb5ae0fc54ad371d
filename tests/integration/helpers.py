"""Helpers the integration tests share."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from services.ingest.keys import BROKER as INGEST_BROKER
from services.writer.keys import BROKER as WRITER_BROKER
from tests.support.eventually import eventually


async def ready(client: TestClient, timeout: float = 15.0) -> None:
    """Wait until the service's /readyz answers 200."""

    async def status() -> int:
        resp = await client.get("/readyz")
        return resp.status

    await eventually(status, lambda s: s == 200, timeout=timeout, what="/readyz 200")


async def broker_up(client: TestClient, timeout: float = 15.0) -> None:
    app = client.app
    assert app is not None
    broker = app[INGEST_BROKER] if INGEST_BROKER in app else app[WRITER_BROKER]
    assert await broker.wait_available(timeout), f"broker never connected: {broker.last_error}"


async def rows(db: asyncpg.Connection, n: int, timeout: float = 15.0) -> list[Any]:
    """Wait until the events table holds `n` rows; returns them."""

    async def count() -> int:
        return int(await db.fetchval("SELECT count(*) FROM events"))

    await eventually(count, lambda c: c >= n, timeout=timeout, what=f"{n} event rows")
    return list(await db.fetch("SELECT * FROM events ORDER BY received_at, id"))


async def start_pipeline(start_writer: Any, start_ingest: Any) -> tuple[TestClient, TestClient]:
    """Writer and ingest with default test settings, both ready."""
    writer = await start_writer()
    ingest = await start_ingest()
    await ready(writer)
    await ready(ingest)
    return writer, ingest
