"""Silences (`alert_silences`): the API's CRUD and the engine's silences in force."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from services.alerting.repos.codec import Row, dumps, loads
from services.alerting.rules.matchdoc import matchers_from_doc
from shared.db import Database

_COLUMNS = "id, matchers, starts_at, ends_at, author, comment, created_at, updated_at"
_SELECT = f"SELECT {_COLUMNS} FROM alert_silences"


@dataclass(frozen=True, slots=True)
class SilenceSpec:
    """What a tenant gives for a silence, checked (services/alerting/contracts.py)."""

    matchers: list[dict[str, str]]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str


class SilenceRepo(Protocol):
    # `active_at`: only the silences in force then; None: all.
    async def of_tenant(self, tenant: str, active_at: datetime | None) -> list[Row]: ...
    async def get(self, tenant: str, silence_id: str) -> Row | None: ...
    async def create(self, tenant: str, spec: SilenceSpec) -> Row: ...
    async def replace(self, tenant: str, silence_id: str, spec: SilenceSpec) -> Row | None: ...
    async def delete(self, tenant: str, silence_id: str) -> bool: ...


class PgSilenceRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_tenant(self, tenant: str, active_at: datetime | None) -> list[Row]:
        pool = await self._db.pool()
        query = f"{_SELECT} WHERE tenant_id = $1"
        args: list[Any] = [tenant]
        if active_at is not None:
            query += " AND starts_at <= $2 AND ends_at > $2"
            args.append(active_at)
        return list(await pool.fetch(query + " ORDER BY starts_at DESC, id", *args))

    async def get(self, tenant: str, silence_id: str) -> Row | None:
        pool = await self._db.pool()
        row: Row | None = await pool.fetchrow(
            f"{_SELECT} WHERE id = $1 AND tenant_id = $2", silence_id, tenant
        )
        return row

    async def create(self, tenant: str, spec: SilenceSpec) -> Row:
        pool = await self._db.pool()
        row: Row = await pool.fetchrow(
            "INSERT INTO alert_silences (id, tenant_id, matchers, starts_at, ends_at, author,"
            f" comment) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
            str(uuid.uuid4()),
            tenant,
            *_values(spec),
        )
        return row

    async def replace(self, tenant: str, silence_id: str, spec: SilenceSpec) -> Row | None:
        pool = await self._db.pool()
        row: Row | None = await pool.fetchrow(
            "UPDATE alert_silences SET matchers = $3, starts_at = $4, ends_at = $5, author = $6,"
            " comment = $7, updated_at = now() WHERE id = $1 AND tenant_id = $2"
            f" RETURNING {_COLUMNS}",
            silence_id,
            tenant,
            *_values(spec),
        )
        return row

    async def delete(self, tenant: str, silence_id: str) -> bool:
        pool = await self._db.pool()
        status = await pool.execute(
            "DELETE FROM alert_silences WHERE id = $1 AND tenant_id = $2", silence_id, tenant
        )
        return str(status).endswith(" 1")


def _values(spec: SilenceSpec) -> tuple[Any, ...]:
    return (dumps(spec.matchers), spec.starts_at, spec.ends_at, spec.author, spec.comment)


async def active_silences(
    conn: asyncpg.Connection | asyncpg.Pool, now: datetime
) -> list[dict[str, Any]]:
    """The silences in force at `now`, their matchers built (and regexes compiled) once
    per tick rather than once per alert."""
    rows = await conn.fetch(
        "SELECT id, tenant_id, matchers FROM alert_silences"
        " WHERE starts_at <= $1 AND ends_at > $1 ORDER BY starts_at, id",
        now,
    )
    silences = []
    for r in rows:
        errors: dict[str, str] = {}
        matchers = matchers_from_doc(loads(r["matchers"]), errors)
        if errors:  # stored by an older version (e.g. a regex RE2 refuses): it matches nothing
            continue
        silences.append({"id": str(r["id"]), "tenant": r["tenant_id"], "matchers": matchers})
    return silences
