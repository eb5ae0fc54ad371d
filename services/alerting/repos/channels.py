"""Channels (`alert_channels`): the API's CRUD, the rule check that channels exist, the
channels file's upsert and the activity view's per-channel figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg

from services.alerting.files import Channel
from services.alerting.repos.codec import NameTaken, Row, dumps
from shared.db import Database

_COLUMNS = "name, type, config, enabled, created_at, updated_at"
_SELECT = f"SELECT {_COLUMNS} FROM alert_channels"
# Per channel its last notification and its counts by status (the delivery log's).
_ACTIVITY = """
SELECT c.name, c.type, c.enabled, last.status, last.created_at, last.delivered_at,
       last.last_error,
       coalesce((SELECT jsonb_object_agg(s.status, s.n) FROM (
           SELECT d.status, count(*) AS n FROM notification_deliveries d
           WHERE d.tenant_id = c.tenant_id AND d.channel = c.name GROUP BY 1) s),
           '{}'::jsonb) AS counts
FROM alert_channels c
LEFT JOIN LATERAL (
    SELECT d.status, d.created_at, d.delivered_at, d.last_error FROM notification_deliveries d
    WHERE d.tenant_id = c.tenant_id AND d.channel = c.name
    ORDER BY d.created_at DESC LIMIT 1) last ON true
WHERE c.tenant_id = $1 ORDER BY c.name LIMIT 1000
"""


class ChannelRepo(Protocol):
    async def of_tenant(self, tenant: str) -> list[Row]: ...
    async def get(self, tenant: str, name: str) -> Row | None: ...
    async def existing(self, tenant: str, names: Sequence[str]) -> set[str]: ...
    # NameTaken when the tenant has a channel of this name.
    async def create(
        self, tenant: str, name: str, kind: str, config: Any, enabled: bool
    ) -> Row: ...
    async def replace(
        self, tenant: str, name: str, kind: str, config: Any, enabled: bool
    ) -> Row: ...
    async def delete(self, tenant: str, name: str) -> bool: ...


class PgChannelRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_tenant(self, tenant: str) -> list[Row]:
        pool = await self._db.pool()
        return list(await pool.fetch(f"{_SELECT} WHERE tenant_id = $1 ORDER BY name", tenant))

    async def get(self, tenant: str, name: str) -> Row | None:
        pool = await self._db.pool()
        row: Row | None = await pool.fetchrow(
            f"{_SELECT} WHERE tenant_id = $1 AND name = $2", tenant, name
        )
        return row

    async def existing(self, tenant: str, names: Sequence[str]) -> set[str]:
        pool = await self._db.pool()
        rows = await pool.fetch(
            "SELECT name FROM alert_channels WHERE tenant_id = $1 AND name = ANY($2::text[])",
            tenant,
            list(names),
        )
        return {r["name"] for r in rows}

    async def create(self, tenant: str, name: str, kind: str, config: Any, enabled: bool) -> Row:
        pool = await self._db.pool()
        try:
            row: Row = await pool.fetchrow(
                "INSERT INTO alert_channels (tenant_id, name, type, config, enabled)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
                *(tenant, name, kind, dumps(config), enabled),
            )
        except asyncpg.UniqueViolationError as exc:
            raise NameTaken(name) from exc
        return row

    async def replace(self, tenant: str, name: str, kind: str, config: Any, enabled: bool) -> Row:
        pool = await self._db.pool()
        row: Row = await pool.fetchrow(
            "UPDATE alert_channels SET type = $3, config = $4, enabled = $5, updated_at = now()"
            f" WHERE tenant_id = $1 AND name = $2 RETURNING {_COLUMNS}",
            *(tenant, name, kind, dumps(config), enabled),
        )
        return row

    async def delete(self, tenant: str, name: str) -> bool:
        pool = await self._db.pool()
        status = await pool.execute(
            "DELETE FROM alert_channels WHERE tenant_id = $1 AND name = $2", tenant, name
        )
        return str(status).endswith(" 1")

    async def activity(self, tenant: str) -> list[Row] | None:
        """Per channel: name, type, enabled, its last delivery (status, created_at,
        delivered_at, last_error) and counts by status; None without the delivery log."""
        pool = await self._db.pool()
        try:
            return list(await pool.fetch(_ACTIVITY, tenant))
        except asyncpg.UndefinedTableError:
            return None


async def upsert_channel(conn: asyncpg.Connection | asyncpg.Pool, channel: Channel) -> None:
    """Insert or replace a channel by (tenant, name) (the channels file's)."""
    await conn.execute(
        """INSERT INTO alert_channels (tenant_id, name, type, config, enabled)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, name) DO UPDATE SET type = EXCLUDED.type,
               config = EXCLUDED.config, enabled = EXCLUDED.enabled, updated_at = now()""",
        channel.tenant,
        channel.name,
        channel.type,
        dumps(channel.config),
        channel.enabled,
    )
