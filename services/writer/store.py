"""The events table, seen from the writer: one idempotent insert per batch."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import orjson

from shared.contracts import HIT_CLICK_V1, HIT_OPEN_V1, Envelope
from shared.db import Database, apply_migrations

KIND = {HIT_OPEN_V1: "open", HIT_CLICK_V1: "click"}

INSERT_EVENTS = """
INSERT INTO events (id, occurred_at, received_at, tenant_id, email_id, kind, ip,
                    user_agent, url, props)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                     $5::text[], $6::text[], $7::inet[], $8::text[], $9::text[], $10::jsonb[])
ON CONFLICT (id, occurred_at) DO NOTHING
"""


class EventStore(Protocol):
    async def insert_hits(self, events: list[Envelope]) -> int:
        """Store the hits in one transaction; returns how many were new."""
        ...


def _month(ts: datetime) -> tuple[int, int]:
    return ts.year, ts.month


class PostgresEventStore:
    def __init__(self, db: Database, *, migrate: bool = True) -> None:
        self.db = db
        self._migrate = migrate
        self._migrated = False
        self._months: set[tuple[int, int]] = set()

    async def prepare(self) -> None:
        """Apply pending migrations (start-up); a no-op once done or when disabled."""
        if self._migrate and not self._migrated:
            pool = await self.db.pool()
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            self._migrated = True

    async def insert_hits(self, events: list[Envelope]) -> int:
        await self.prepare()  # the database may have been down at start-up
        pool = await self.db.pool()
        async with pool.acquire() as conn:
            for event in events:
                month = _month(event.occurred_at)
                if month not in self._months:
                    await conn.execute(
                        "SELECT belfry_ensure_events_partition($1)", event.occurred_at
                    )
                    self._months.add(month)
            cols: tuple[list[object], ...] = tuple([] for _ in range(10))
            for e in events:
                d = e.data
                props = d.get("props")
                for col, value in zip(
                    cols,
                    (
                        e.id,
                        e.occurred_at,
                        e.received_at,
                        e.tenant,
                        d["email_id"],
                        KIND[e.type],
                        d.get("ip"),
                        d.get("ua"),
                        d.get("url"),
                        orjson.dumps(props).decode() if props is not None else None,
                    ),
                    strict=True,
                ):
                    col.append(value)
            async with conn.transaction():
                status = await conn.execute(INSERT_EVENTS, *cols)
        self.db.mark_ok()
        return int(status.rsplit(" ", 1)[1])
