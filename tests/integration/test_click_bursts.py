"""The burst rule (`all_links_at_once`) through the writer's store and real Postgres: which
clicks it relabels, across batches, and how much of `events` it reads under a flood."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.writer.store import PostgresEventStore, _rows, click_verdicts_args, typed
from services.writer.verdicts import BURST_SCAN, CLICK_VERDICTS_SQL
from shared.contracts import HIT_CLICK_V2, HIT_OPEN_V2, Envelope
from shared.db import Database

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0"


def click(email: str, url: str, after_ms: int, tenant: str = "acme", ua: str = CHROME) -> Envelope:
    at = AT + timedelta(milliseconds=after_ms)
    data = {"email_id": email, "ip": "203.0.113.9", "ua": ua, "url": url}
    return Envelope(str(uuid.uuid4()), HIT_CLICK_V2, tenant, at, at, data, {})


def open_(email: str, after_ms: int) -> Envelope:
    at = AT + timedelta(milliseconds=after_ms)
    data = {"email_id": email, "ip": "203.0.113.9", "ua": CHROME}
    return Envelope(str(uuid.uuid4()), HIT_OPEN_V2, "acme", at, at, data, {})


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresEventStore]:
    s = PostgresEventStore(Database(database_url), migrate=False)
    yield s
    await (await s.db.pool()).close()


async def verdicts(db: asyncpg.Connection, events: list[Envelope]) -> list[str | None]:
    """Each event's verdict reason, in the order given (None: human)."""
    got = await db.fetch(
        "SELECT id::text, verdict_reason FROM events WHERE id = ANY($1::uuid[])",
        [e.id for e in events],
    )
    by_id = {r["id"]: r["verdict_reason"] for r in got}
    return [by_id[e.id] for e in events]


async def test_two_links_within_a_second_are_a_burst_even_across_batches(
    db: asyncpg.Connection, store: PostgresEventStore
) -> None:
    first = click("m1", "https://example.com/a", 0)
    await store.insert_hits([first])
    assert await verdicts(db, [first]) == [None]  # alone, it is a person's click
    second = click("m1", "https://example.com/b", 900)
    await store.insert_hits([second])
    assert await verdicts(db, [first, second]) == ["all_links_at_once"] * 2


async def test_what_is_not_a_burst_stays_human(
    db: asyncpg.Connection, store: PostgresEventStore
) -> None:
    kept = [
        click("m1", "https://example.com/a", 0),
        click("m1", "https://example.com/a", 200),  # the same link again
        click("m1", "https://example.com/b", 1300),  # another link, 1.1 s later
        click("m2", "https://example.com/c", 100),  # another email
        click("m1", "https://example.com/d", 100, tenant="globex"),  # another tenant
    ]
    await store.insert_hits(kept[:2])
    await store.insert_hits(kept[2:])
    assert await verdicts(db, kept) == [None] * len(kept)


async def test_a_more_specific_reason_is_kept_and_still_makes_a_burst(
    db: asyncpg.Connection, store: PostgresEventStore
) -> None:
    scanner = click("m1", "https://example.com/a", 0, ua="python-requests/2.32")
    person = click("m1", "https://example.com/b", 400)
    await store.insert_hits([scanner, person])
    assert await verdicts(db, [scanner, person]) == ["scanner", "all_links_at_once"]


async def test_a_burst_right_after_registration_is_too_soon_not_a_burst(
    db: asyncpg.Connection, store: PostgresEventStore
) -> None:
    # Both rules match; click_too_soon is tried first, so it gives the reason.
    await db.execute("INSERT INTO emails (tenant_id, id, created_at) VALUES ('acme', 'm1', $1)", AT)
    pair = [click("m1", "https://example.com/a", 0), click("m1", "https://example.com/b", 300)]
    later = click("m1", "https://example.com/c", 10_500)  # a burst with nothing, 10.5 s on
    await store.insert_hits(pair)
    await store.insert_hits([later])
    assert await verdicts(db, [*pair, later]) == ["click_too_soon"] * 2 + [None]


async def test_a_flood_to_one_email_does_not_make_its_next_click_read_all_of_it(
    db: asyncpg.Connection, store: PostgresEventStore
) -> None:
    # 2,000 opens and 1,000 clicks of one link to one email within one second (an attacker
    # or a broken client), then one more click of another link: the rule must read a
    # bounded number of rows, not the flood.
    flood = [open_("m1", i // 2) for i in range(2000)]
    flood += [click("m1", "https://example.com/a", i) for i in range(1000)]
    for i in range(0, len(flood), 500):
        await store.insert_hits(flood[i : i + 500])
    last = click("m1", "https://example.com/b", 1000)
    await store.insert_hits([last])
    args = click_verdicts_args(_rows(typed([last])))
    read = await rows_read(db, CLICK_VERDICTS_SQL, *args)
    assert read <= 2 * BURST_SCAN + 10
    # The new click and the clicks of the other link nearest it are a burst.
    reasons = await verdicts(db, [last, *flood[-BURST_SCAN:]])
    assert reasons == ["all_links_at_once"] * (BURST_SCAN + 1)


async def rows_read(db: asyncpg.Connection, sql: str, *args: Any) -> int:
    """How many rows of `events` (its partitions) the statement read, by index or by scan,
    functions' statements included: this transaction's own table statistics, rolled back."""
    tr = db.transaction()
    await tr.start()
    try:
        before = await db.fetchval(READ_SQL)
        await db.execute(sql, *args)
        return int(await db.fetchval(READ_SQL) - before)
    finally:
        await tr.rollback()


READ_SQL = """
SELECT sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))
FROM pg_stat_xact_user_tables WHERE relname LIKE 'events%'
"""
