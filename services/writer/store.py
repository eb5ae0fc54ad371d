"""The events and errors tables, seen from the writer: one idempotent insert per batch.

Hits (`hit.*`) go to `events`; error events (`error.v1`) to `errors`, in the same
transaction. A batch of hits only (the hot path) costs one extra pass over the events,
to find that there are no errors.

Events come typed (shared/contracts_types.py): a row is read off the structs' attributes,
and `props` is stored as the JSON text it arrived as. Callers holding the older
dict-shaped `Envelope` (scripts, tests) are converted on the way in."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import orjson

from services.writer.privacy import DEFAULT, Privacy, TenantPrivacy
from services.writer.verdicts import CLICK_VERDICTS_ARGS, CLICK_VERDICTS_SQL, classify_hit
from shared.contracts import (
    HIT_CLICK_V1,
    HIT_CLICK_V2,
    HIT_OPEN_V1,
    HIT_OPEN_V2,
    Envelope,
    Event,
    decode_event,
    envelope_dict,
)
from shared.contracts_types import props_json
from shared.db import Database, apply_migrations
from shared.errors_contract import ERROR_V1

KIND = {HIT_OPEN_V1: "open", HIT_CLICK_V1: "click", HIT_OPEN_V2: "open", HIT_CLICK_V2: "click"}
# Every event type the writer stores: hits, and applications' errors.
STORED = frozenset({*KIND, ERROR_V1})

# The batch's rows as one array of records (migration 0015): asyncpg encodes a record per
# row instead of twelve array elements, each checked for nesting in Python.
INSERT_EVENTS = """
INSERT INTO events (id, occurred_at, received_at, tenant_id, email_id, kind, ip,
                    user_agent, url, props, verdict, verdict_reason)
SELECT r.id, r.occurred_at, r.received_at, r.tenant_id, r.email_id, r.kind, r.ip::inet,
       r.user_agent, r.url, r.props::jsonb, r.verdict, r.verdict_reason
FROM unnest($1::belfry_event_in[]) AS r
ON CONFLICT (id, occurred_at) DO NOTHING
"""

# What the click rules need of a click's record: id, occurred_at, tenant, email, url, verdict.
CLICK_COLUMNS = (0, 1, 3, 4, 8, 10)

INSERT_ERRORS = """
INSERT INTO errors (id, occurred_at, received_at, tenant_id, fingerprint, type, message,
                    stack, labels)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[])
ON CONFLICT (id, occurred_at) DO NOTHING
"""


class EventStore(Protocol):
    async def insert_hits(self, events: list[Event]) -> int:
        """Store the events (hits and errors) in one transaction; returns how many were new."""
        ...


def _month(ts: datetime) -> tuple[int, int]:
    """The UTC month of `ts`, the one its partition holds (`2026-02-28T23:30-01:00` is
    March); ingest's timestamps are UTC already, so the conversion is rare."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.year, ts.month


def _inet_text(ip: str | None) -> str | None:
    """`ip` as Postgres `inet` input. The contract accepted it: without a colon it is a
    dotted quad (what ipaddress accepts as IPv4) and goes as is; an IPv6 address goes in
    ipaddress's canonical form without a zone, as asyncpg's binary `inet` stored it."""
    if ip is None or ":" not in ip:
        return ip
    return str(ipaddress.ip_address(ipaddress.ip_address(ip).packed))


def _props_purpose(props_text: str | None) -> str | None:
    """A v1 hit's prefetch hint, `props.purpose` (before v2 had `hints`)."""
    if props_text is None or '"purpose"' not in props_text:
        return None
    purpose = orjson.loads(props_text).get("purpose")
    return purpose if isinstance(purpose, str) else None


def _row(event: Any, privacy: Privacy) -> tuple[Any, ...]:
    """One record of INSERT_EVENTS. The verdict is decided on the full data; then the
    tenant's privacy settings decide what of it is kept."""
    data = event.data
    kind = KIND[event.type]
    hints, ip, ua = data.hints, data.ip, data.ua
    props = props_json(data.props)
    purpose = hints.purpose if hints is not None else None
    if purpose is None and props is not None:
        purpose = _props_purpose(props)
    verdict, reason = classify_hit(kind == "open", purpose, ip, ua)
    private = hints is not None and bool(hints.dnt or hints.gpc)
    ip, ua = privacy.keep(_inet_text(ip), ua, private)
    return (
        event.id,
        event.occurred_at,
        event.received_at,
        event.tenant,
        data.email_id,
        kind,
        ip,
        ua,
        data.url,
        props,
        verdict,
        reason,
    )


def _rows(events: list[Event], privacy: dict[str, Privacy] | None = None) -> list[tuple[Any, ...]]:
    """The `belfry_event_in` records of INSERT_EVENTS, one per event."""
    privacy = privacy or {}
    return [_row(e, privacy.get(e.tenant, DEFAULT)) for e in events]


def typed(events: list[Event] | list[Envelope]) -> list[Event]:
    """`events` as typed events; a dict-shaped `Envelope` is decoded by its contract."""
    return [decode_event(envelope_dict(e)) if isinstance(e, Envelope) else e for e in events]


def click_verdicts_args(clicks: list[tuple[Any, ...]]) -> list[Any]:
    """CLICK_VERDICTS_SQL's arguments for the click records of a batch. The records go
    as inserted: looking the rows up again would leave the plan to statistics."""
    return [*([row[i] for row in clicks] for i in CLICK_COLUMNS), *CLICK_VERDICTS_ARGS]


def _error_columns(events: list[Event]) -> tuple[list[Any], ...]:
    """The unnest() arrays of INSERT_ERRORS (the contract checked every field)."""
    datas = [e.data for e in events]
    return (
        [e.id for e in events],
        [e.occurred_at for e in events],
        [e.received_at for e in events],
        [e.tenant for e in events],
        [d.fingerprint for d in datas],
        [d.type for d in datas],
        [d.message for d in datas],
        [d.stack for d in datas],
        [orjson.dumps(d.labels).decode() for d in datas],
    )


def split_errors(events: list[Event]) -> tuple[list[Event], list[Event]]:
    """(hits, errors) of a batch; a batch of hits only is returned as it is."""
    errors = [e for e in events if e.type == ERROR_V1]
    if not errors:
        return events, errors
    return [e for e in events if e.type != ERROR_V1], errors


class PostgresEventStore:
    def __init__(
        self, db: Database, *, migrate: bool = True, privacy: TenantPrivacy | None = None
    ) -> None:
        self.db = db
        self.privacy = privacy or TenantPrivacy()
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

    async def insert_hits(self, events: list[Event] | list[Envelope]) -> int:
        """Store hits and error events in one transaction; returns how many were new."""
        await self.prepare()  # the database may have been down at start-up
        hits, errors = split_errors(typed(events))
        pool = await self.db.pool()
        async with pool.acquire() as conn:
            await self._ensure_partitions(conn, hits)
            privacy = await self.privacy.for_tenants(conn, {e.tenant for e in hits})
            rows = _rows(hits, privacy)
            clicks = [row for row in rows if row[5] == "click"]
            if clicks or errors:
                async with conn.transaction():
                    inserted = await _write(conn, rows, clicks, errors)
            else:
                # One statement is atomic by itself: BEGIN and COMMIT would cost two more
                # round trips (a third of the writer's CPU per hit in a batch of opens).
                inserted = await _write(conn, rows, clicks, errors)
        self.db.mark_ok()
        return inserted

    async def _ensure_partitions(self, conn: asyncpg.Connection, hits: list[Event]) -> None:
        # Month -> its first event's timestamp (reversed: the first one is set last).
        months = {_month(e.occurred_at): e.occurred_at for e in reversed(hits)}
        for month, occurred_at in months.items():
            if month not in self._months:
                await conn.execute("SELECT belfry_ensure_events_partition($1)", occurred_at)
                self._months.add(month)


async def _write(
    conn: asyncpg.Connection,
    rows: list[tuple[Any, ...]],
    clicks: list[tuple[Any, ...]],
    errors: list[Event],
) -> int:
    """The batch's statements; returns how many rows were new."""
    inserted = 0
    if rows:
        inserted += _count(await conn.execute(INSERT_EVENTS, rows))
    if clicks:  # the verdict rules that need other rows
        await conn.execute(CLICK_VERDICTS_SQL, *click_verdicts_args(clicks))
    if errors:
        inserted += _count(await conn.execute(INSERT_ERRORS, *_error_columns(errors)))
    return inserted


def _count(status: str) -> int:
    """The row count of an `INSERT 0 <n>` status."""
    return int(status.rsplit(" ", 1)[1])
