"""Tenants (`tenants`): create one with its first key, whether one exists, list them
with their figures, and their stored privacy settings (a jsonb document)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from services.api.repos import Conn, transaction
from shared.auth import create_key

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TenantRow:
    id: str
    name: str
    created_at: datetime
    settings: Document  # as stored: only what was set
    live_keys: int
    emails: int


class TenantRepo(Protocol):
    # The tenant and its first key in one transaction: the key, or None if it exists.
    async def create(self, tenant: str, name: str, key_label: str) -> str | None: ...
    async def exists(self, tenant: str) -> bool: ...
    async def all(self) -> list[TenantRow]: ...
    # The stored settings document; None when there is no such tenant.
    async def settings(self, tenant: str) -> Document | None: ...
    # Every tenant's stored settings document, by tenant id in order.
    async def all_settings(self) -> dict[str, Document]: ...
    # `change(stored)` is the new document, written under the row's lock; None: no tenant.
    async def change_settings(
        self, tenant: str, change: Callable[[Document], Document]
    ) -> Document | None: ...


_ALL = (
    "SELECT t.id, t.name, t.created_at, t.settings::text AS settings,"
    " (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL)"
    " AS live_keys,"
    " (SELECT count(*) FROM emails e WHERE e.tenant_id = t.id) AS emails"
    " FROM tenants t ORDER BY t.id"
)


class PgTenantRepo:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def create(self, tenant: str, name: str, key_label: str) -> str | None:
        async with transaction(self._conn) as conn:
            inserted = await conn.fetchval(
                "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING"
                " RETURNING id",
                tenant,
                name,
            )
            return None if inserted is None else await create_key(conn, tenant, key_label)

    async def exists(self, tenant: str) -> bool:
        sql = "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)"
        return bool(await self._conn.fetchval(sql, tenant))

    async def all(self) -> list[TenantRow]:
        rows = await self._conn.fetch(_ALL)
        return [TenantRow(**{**dict(r), "settings": orjson.loads(r["settings"])}) for r in rows]

    async def settings(self, tenant: str) -> Document | None:
        raw = await self._conn.fetchval("SELECT settings::text FROM tenants WHERE id = $1", tenant)
        return None if raw is None else dict(orjson.loads(raw))

    async def all_settings(self) -> dict[str, Document]:
        rows = await self._conn.fetch("SELECT id, settings::text AS s FROM tenants ORDER BY id")
        return {row["id"]: dict(orjson.loads(row["s"])) for row in rows}

    async def change_settings(
        self, tenant: str, change: Callable[[Document], Document]
    ) -> Document | None:
        async with transaction(self._conn) as conn:
            raw = await conn.fetchval(
                "SELECT settings::text FROM tenants WHERE id = $1 FOR UPDATE", tenant
            )
            if raw is None:
                return None
            doc = change(dict(orjson.loads(raw)))
            await conn.execute(
                "UPDATE tenants SET settings = $2::jsonb WHERE id = $1",
                tenant,
                orjson.dumps(doc).decode(),
            )
        return doc
