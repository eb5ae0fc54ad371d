"""API keys against the real database: created once, stored hashed, revocable."""

from __future__ import annotations

import asyncpg

from shared.auth import create_key, list_keys, revoke_key, tenant_for_key


async def test_key_sees_its_tenant_until_revoked(db: asyncpg.Connection) -> None:
    key = await create_key(db, "acme", "ci")
    other = await create_key(db, "globex")
    assert await tenant_for_key(db, key) == "acme"
    assert await tenant_for_key(db, other) == "globex"
    stored = await db.fetchval("SELECT key_hash FROM api_keys WHERE tenant_id = 'acme'")
    assert key.encode() not in bytes(stored)  # only the hash is kept

    (info,) = await list_keys(db, "acme")
    assert info.label == "ci" and info.revoked_at is None
    assert await revoke_key(db, info.id)
    assert not await revoke_key(db, info.id)  # already revoked
    assert await tenant_for_key(db, key) is None
    assert await tenant_for_key(db, other) == "globex"


async def test_malformed_and_forged_keys_see_nothing(db: asyncpg.Connection) -> None:
    key = await create_key(db, "acme")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for token in (forged, "", "blf_", "Bearer x", key.replace("blf_", "xyz_")):
        assert await tenant_for_key(db, token) is None
