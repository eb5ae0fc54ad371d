"""Tenants and their keys, for the command line (services.api.__main__)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from services.api import privacy
from shared.auth import create_key


class TenantError(ValueError):
    """A tenant command cannot be done; the message says why."""


async def create_tenant(conn: asyncpg.Connection, tenant: str, name: str = "") -> str:
    """Create the tenant and its first API key; returns the key (shown once)."""
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING"
            " RETURNING id",
            tenant,
            name,
        )
        if inserted is None:
            raise TenantError(f"tenant {tenant!r} exists already (add a key with `key create`)")
        return await create_key(conn, tenant, "created with the tenant")


async def require_tenant_row(conn: asyncpg.Connection, tenant: str) -> None:
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant):
        raise TenantError(f"no tenant {tenant!r} (create it with `tenant create`)")


async def list_tenants(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT t.id, t.name, t.created_at, t.settings::text AS settings,"
        " (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL)"
        " AS live_keys,"
        " (SELECT count(*) FROM emails e WHERE e.tenant_id = t.id) AS emails"
        " FROM tenants t ORDER BY t.id"
    )
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "created_at": r["created_at"].isoformat(),
            "settings": privacy.effective(orjson.loads(r["settings"])),
            "live_keys": r["live_keys"],
            "emails": r["emails"],
        }
        for r in rows
    ]
