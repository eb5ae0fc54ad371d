"""`POST /v1/track`: batches from servers and SDKs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.conftest import Started
from tests.integration.helpers import ready, rows, start_pipeline


async def test_valid_batch_is_accepted_after_confirmation(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)
    ts = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    items = [
        {
            "type": "open",
            "tenant": "acme",
            "email_id": "e1",
            "ts": ts.isoformat(),
            "ua": "SDK/1.0",
            "ip": "203.0.113.9",
            "props": {"campaign": "nov"},
        },
        {
            "type": "click",
            "tenant": "acme",
            "email_id": "e1",
            "ts": ts.timestamp(),
            "url": "https://example.com/x",
        },
    ]
    resp = await ingest.post("/v1/track", json=items)
    assert resp.status == 202
    assert await resp.json() == {"accepted": 2, "rejected": 0}
    stored = {r["kind"]: r for r in await rows(db, 2)}
    assert stored["open"]["occurred_at"] == ts
    assert stored["open"]["props"] == '{"campaign": "nov"}'
    assert str(stored["open"]["ip"]) == "203.0.113.9"
    assert stored["click"]["url"] == "https://example.com/x"
    assert stored["click"]["occurred_at"] == ts


async def test_invalid_items_are_listed_and_valid_ones_kept(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    items = [
        {"type": "open", "tenant": "acme", "email_id": "good"},
        {"type": "bounce", "tenant": "acme", "email_id": "x"},
        {"type": "click", "tenant": "acme", "email_id": "x", "url": "javascript:alert(1)"},
        {"type": "open", "tenant": "Bad Tenant", "email_id": "x"},
        {"type": "open", "tenant": "acme", "email_id": "x", "ts": future},
        {"type": "open", "tenant": "acme", "email_id": "x", "ip": "not-an-ip"},
        {"type": "open", "tenant": "acme", "email_id": "x", "ua": "nul\u0000"},
        "not an object",
    ]
    resp = await ingest.post("/v1/track", json=items)
    assert resp.status == 400
    body = await resp.json()
    assert body["accepted"] == 1
    assert body["rejected"] == 7
    assert [e["index"] for e in body["errors"]] == [1, 2, 3, 4, 5, 6, 7]
    assert all(isinstance(e["error"], str) and e["error"] for e in body["errors"])
    stored = await rows(db, 1)
    assert [r["email_id"] for r in stored] == ["good"]


async def test_client_ids_make_retries_idempotent(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    _, ingest = await start_pipeline(start_writer, start_ingest)
    item = {"type": "open", "tenant": "acme", "email_id": "e1", "id": str(uuid.uuid4())}
    resp = await ingest.post("/v1/track", json=[item])
    assert resp.status == 400, "an id without ts can't be idempotent"
    item["ts"] = datetime.now(UTC).isoformat()
    for _ in range(2):
        resp = await ingest.post("/v1/track", json=[item])
        assert resp.status == 202
    resp = await ingest.post(
        "/v1/track", json=[{"type": "open", "tenant": "acme", "email_id": "last"}]
    )
    assert resp.status == 202
    stored = await rows(db, 2)
    assert sorted(r["email_id"] for r in stored) == ["e1", "last"]


async def test_limits_and_malformed_bodies(start_ingest: Started) -> None:
    ingest = await start_ingest(track_max_items=3, track_max_bytes=2048)
    await ready(ingest)
    one = {"type": "open", "tenant": "acme", "email_id": "e"}
    resp = await ingest.post("/v1/track", json=[one] * 4)
    assert resp.status == 413
    resp = await ingest.post("/v1/track", data=b"[" + b" " * 4096 + b"]")
    assert resp.status == 413
    resp = await ingest.post("/v1/track", data=b"{oops")
    assert resp.status == 400
    assert "JSON" in (await resp.json())["error"]
    resp = await ingest.post("/v1/track", json={"type": "open"})
    assert resp.status == 400
    resp = await ingest.post("/v1/track", json=[])
    assert resp.status == 400
