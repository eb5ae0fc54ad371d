"""API keys: `Authorization: Bearer blf_<key id>_<secret>`; each key sees one tenant.

Shared by every service with a management API (api, alerting), so one key works on both.
A key is shown once when created; only its SHA-256 is stored (`api_keys`, migration 0002).
The key id is public (it names the key in listings and revocation) and lets a lookup use
the primary key; the secret part is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson
from aiohttp import web

KEY_PREFIX = "blf_"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant_id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> bytes:
    # surrogatepass: a header's undecodable bytes arrive as lone surrogates; they hash
    # (to no stored key) instead of raising.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _key_id(key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != 12 or len(secret) < 32:
        return None
    if not all(c in "0123456789abcdef" for c in key_id):  # token_hex: never sent to Postgres
        return None
    return key_id


async def create_key(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, label: str = ""
) -> str:
    """Store a new key for `tenant_id`; returns the full key (the only time it exists)."""
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, key_hash, label) VALUES ($1, $2, $3, $4)",
        key_id,
        tenant_id,
        _hash(key),
        label,
    )
    return key


async def tenant_for_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> str | None:
    """The tenant a live key belongs to; None for unknown, malformed or revoked keys."""
    key_id = _key_id(key)
    if key_id is None:
        return None
    row = await conn.fetchrow(
        "SELECT tenant_id, key_hash FROM api_keys WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    if row is None or not hmac.compare_digest(bytes(row["key_hash"]), _hash(key)):
        return None
    return str(row["tenant_id"])


async def revoke_key(conn: asyncpg.Connection | asyncpg.Pool, key_id: str) -> bool:
    """Revoke a key by id; False when no live key has that id."""
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return bool(status.endswith(" 1"))


async def list_keys(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str | None = None
) -> list[KeyInfo]:
    rows = await conn.fetch(
        "SELECT id, tenant_id, label, created_at, revoked_at FROM api_keys"
        " WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, created_at",
        tenant_id,
    )
    return [KeyInfo(**dict(r)) for r in rows]


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(reason: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=orjson.dumps({"error": reason}).decode(),
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="belfry"'},
    )


async def require_tenant(request: web.Request, pool: asyncpg.Pool) -> str:
    """The tenant of the request's bearer key; raises 401 (JSON reason) otherwise."""
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing bearer token (Authorization: Bearer <api key>)")
    tenant = await tenant_for_key(pool, token)
    if tenant is None:
        raise _unauthorized("unknown or revoked api key")
    return tenant
