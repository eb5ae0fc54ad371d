"""Registered emails (`emails`): register one, read one, page through a tenant's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.api.repos import Conn

_COLUMNS = "id, subject, recipient, created_at"


@dataclass(frozen=True, slots=True)
class EmailRow:
    id: str
    subject: str | None
    recipient: str | None
    created_at: datetime


class EmailRepo(Protocol):
    async def create(
        self, tenant: str, email_id: str, subject: str | None, recipient: str | None
    ) -> datetime: ...
    async def get(self, tenant: str, email_id: str) -> EmailRow | None: ...
    # Newest first; `before`: only those created before it (the page after).
    async def page(self, tenant: str, before: datetime | None, limit: int) -> list[EmailRow]: ...


class PgEmailRepo:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def create(
        self, tenant: str, email_id: str, subject: str | None, recipient: str | None
    ) -> datetime:
        """Store the email; its `created_at` (now: the writer's classifier reads it)."""
        created: datetime = await self._conn.fetchval(
            "INSERT INTO emails (tenant_id, id, subject, recipient, created_at)"
            " VALUES ($1, $2, $3, $4, now()) RETURNING created_at",
            tenant,
            email_id,
            subject,
            recipient,
        )
        return created

    async def get(self, tenant: str, email_id: str) -> EmailRow | None:
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM emails WHERE tenant_id = $1 AND id = $2", tenant, email_id
        )
        return None if row is None else EmailRow(*row)

    async def page(self, tenant: str, before: datetime | None, limit: int) -> list[EmailRow]:
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM emails WHERE tenant_id = $1"
            " AND ($2::timestamptz IS NULL OR created_at < $2)"
            " ORDER BY created_at DESC, id LIMIT $3",
            tenant,
            before,
            limit,
        )
        return [EmailRow(*row) for row in rows]
