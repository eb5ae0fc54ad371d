"""Pixel and click through ingest → RabbitMQ → writer → Postgres, end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from services.ingest.routes.pixel import GIF
from shared.signing import SigningKeys, click_path
from tests.conftest import Started
from tests.integration.helpers import rows, start_pipeline

UA = "Mozilla/5.0 (Belfry test)"


async def test_pixel_and_signed_click_store_one_row_each(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection, signing: SigningKeys
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)

    # Refused or not recorded first: the valid hits after them prove nothing was queued.
    target = "https://example.com/offer?utm=1&x=%2F"
    link = click_path(signing, "acme", "e-1", target)
    tampered = link.replace("offer", "0ffer")
    resp = await ingest.get(tampered, allow_redirects=False)
    assert resp.status == 400
    assert "Location" not in resp.headers
    assert (await resp.json())["error"] == "signature does not match this link"
    resp = await ingest.get(link.replace("/acme/", "/other/"), allow_redirects=False)
    assert resp.status == 400
    resp = await ingest.get("/acme/click/e-1", params={"url": target}, allow_redirects=False)
    assert resp.status == 400, "an unsigned link must never redirect"
    resp = await ingest.head("/acme/pixel/e-1.gif")
    assert resp.status == 200

    resp = await ingest.get("/acme/pixel/e-1.gif", headers={"User-Agent": UA})
    assert resp.status == 200
    assert await resp.read() == GIF
    assert resp.headers["Content-Type"] == "image/gif"
    assert resp.headers["Cache-Control"] == "no-store, no-cache, must-revalidate"
    assert resp.headers["Pragma"] == "no-cache"
    assert resp.headers["Expires"] == "0"

    resp = await ingest.get(link, headers={"User-Agent": UA}, allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == target

    stored = await rows(db, 2)
    assert len(stored) == 2
    by_kind: dict[str, Any] = {r["kind"]: r for r in stored}
    opened, clicked = by_kind["open"], by_kind["click"]
    for row in (opened, clicked):
        assert row["tenant_id"] == "acme"
        assert row["email_id"] == "e-1"
        assert str(row["ip"]) == "127.0.0.1"
        assert row["user_agent"] == UA
        assert row["occurred_at"] <= row["received_at"] <= row["stored_at"]
        assert (row["verdict"], row["verdict_reason"]) == ("human", None)
    assert opened["url"] is None
    assert clicked["url"] == target


async def test_bad_ids_are_refused_without_publishing(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)
    for path in ("/ACME/pixel/e1.gif", "/acme/pixel/e%20x.gif", "/acme/pixel/" + "x" * 65 + ".gif"):
        resp = await ingest.get(path)
        assert resp.status == 404, path
        assert "error" in await resp.json()
    resp = await ingest.get("/acme/pixel/ok.gif")
    assert resp.status == 200
    stored = await rows(db, 1)
    assert [r["email_id"] for r in stored] == ["ok"]


async def test_many_concurrent_pixels_become_exactly_as_many_rows(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)
    statuses = await asyncio.gather(*(ingest.get(f"/acme/pixel/m{i}.gif") for i in range(300)))
    assert {r.status for r in statuses} == {200}
    stored = await rows(db, 300)
    assert len(stored) == 300
    assert len({r["email_id"] for r in stored}) == 300
