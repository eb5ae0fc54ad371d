"""`POST /v1/track` with ingest tokens (shared.ingest_tokens), through the real ingest,
broker, writer and database: a tenant that requires a token gets no hit without one, a
token never writes for another tenant, and tenants that require none still work.

"Nothing stored" is shown by a later accepted request: refusals answer before anything is
submitted, so once the later request's rows are in, the row count is the whole story."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import TestClient

from shared.ingest_tokens import TenantSelection, mint_token
from shared.signing import SigningKeys
from tests.conftest import Started
from tests.integration.helpers import ready, rows

KEYS = SigningKeys.parse("t2:token-secret-new-0123,t1:token-secret-old-0123")


def hit(tenant: str | None, email_id: str = "e1") -> dict[str, Any]:
    item = {"type": "open", "email_id": email_id}
    return item if tenant is None else {**item, "tenant": tenant}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def pipeline(start_writer: Started, start_ingest: Started, **overrides: Any) -> TestClient:
    writer = await start_writer()
    ingest = await start_ingest(**{"token_keys": KEYS, **overrides})
    await ready(writer)
    await ready(ingest)
    return ingest


async def refused(
    ingest: TestClient, status: int, items: list[Any], token: str | None = None
) -> dict[str, Any]:
    headers = bearer(token) if token else {}
    async with ingest.post("/v1/track", json=items, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/json"
        if status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body: dict[str, Any] = await resp.json()
    assert body["error"]
    return body


async def accepted(ingest: TestClient, items: list[Any], token: str | None = None) -> None:
    headers = bearer(token) if token else {}
    async with ingest.post("/v1/track", json=items, headers=headers) as resp:
        assert resp.status == 202, await resp.text()
        assert await resp.json() == {"accepted": len(items), "rejected": 0}


async def test_every_tenant_requires_a_token(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    ingest = await pipeline(
        start_writer, start_ingest, track_require_token=TenantSelection(every=True)
    )
    token = mint_token(KEYS, "acme")
    await refused(ingest, 401, [hit("acme")])
    await refused(ingest, 401, [hit("acme")], token=token[:-2] + "xx")  # tampered
    await refused(ingest, 401, [hit("acme")], token="blf_000000000000_" + "x" * 32)
    await refused(ingest, 401, [hit("acme")], token=token + "x" * 500)  # too long
    # Minted by the key that rotated out of first place: still verifies while listed.
    old = mint_token(SigningKeys.parse("t1:token-secret-old-0123"), "acme")
    await accepted(ingest, [hit("acme", "e1"), hit(None, "e2")], token=token)
    await accepted(ingest, [hit("acme", "e3")], token=old)
    stored = await rows(db, 3)
    assert sorted((r["tenant_id"], r["email_id"]) for r in stored) == [
        ("acme", "e1"),
        ("acme", "e2"),
        ("acme", "e3"),
    ]


async def test_a_token_never_stores_hits_for_another_tenant(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    ingest = await pipeline(
        start_writer, start_ingest, track_require_token=TenantSelection.of(["acme"])
    )
    acme = mint_token(KEYS, "acme")
    body = await refused(ingest, 403, [hit("acme", "a1"), hit("globex", "g1")], token=acme)
    assert body["items"] == [1]
    # globex requires no token, but one that is presented is still held to its tenant.
    await refused(ingest, 403, [hit("globex", "g2")], token=acme)
    await refused(ingest, 401, [hit("globex", "g3")], token="bit_t2.globex.forged.sig")
    # A request naming a tenant that requires a token needs one, whatever else it holds.
    await refused(ingest, 401, [hit("globex", "g4"), hit("acme", "a2")])
    await accepted(ingest, [hit("acme", "a3")], token=acme)
    stored = await rows(db, 1)
    assert [(r["tenant_id"], r["email_id"]) for r in stored] == [("acme", "a3")]


async def test_tenants_that_require_no_token_work_without_one(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    ingest = await pipeline(
        start_writer, start_ingest, track_require_token=TenantSelection.of(["acme"])
    )
    await accepted(ingest, [hit("globex", "g1")])
    await accepted(ingest, [hit("globex", "g2")], token=mint_token(KEYS, "globex"))
    stored = await rows(db, 2)
    assert sorted(r["email_id"] for r in stored) == ["g1", "g2"]


async def test_without_keys_a_presented_token_is_refused(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    """An ingest with no INGEST_TOKEN_KEYS cannot verify a token: it refuses it rather than
    ignore a credential the client meant to be checked."""
    ingest = await pipeline(start_writer, start_ingest, token_keys=None)
    await refused(ingest, 401, [hit("acme")], token=mint_token(KEYS, "acme"))
    await accepted(ingest, [hit("acme", "ok")])
    assert [r["email_id"] for r in await rows(db, 1)] == ["ok"]


async def test_an_undecodable_token_is_a_401(
    start_ingest: Started, start_writer: Started, db: asyncpg.Connection
) -> None:
    """Header bytes that are not UTF-8 (lone surrogates once aiohttp decodes them), in a
    token of the right shape and length: refused like any bad token, not a 500."""
    ingest = await pipeline(start_writer, start_ingest)
    token = mint_token(KEYS, "acme").encode()
    body = b'[{"type":"open","tenant":"acme","email_id":"e1"}]'
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
    writer.write(
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token[:-2] + b"\xff\xfe\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    answer = await reader.read()
    writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), answer
    assert orjson.loads(rest)["error"]
