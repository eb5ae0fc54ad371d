"""The stats rollups (migration 0013) against the plain scan of `events`.

Events go through the writer's own store (classifier, verdict relabels, idempotent
inserts), with redelivered and overlapping batches, two writers at once, retention,
erasure, and a database migrated to 0013 with rows already in it. After each, the
rollups must equal a rebuild from scratch (`belfry_stats_backfill()`), and the stats
answer from the rollups must equal the old query's answer over `events` for random
ranges (whole days, partial days at both ends, hour and day buckets)."""

from __future__ import annotations

import asyncio
import random
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.api import retention
from services.api.queries import rollup_bounds, tenant_stats
from services.api.retention import months_before
from services.api.timerange import Scope
from services.writer.store import PostgresEventStore
from shared.contracts import HIT_CLICK_V2, HIT_OPEN_V2, Envelope
from shared.db import Database
from shared.db.migrate import MIGRATIONS_DIR, apply_migrations
from tests.api.conftest import Row, seed_email, seed_events

BASE = datetime(2026, 2, 20, tzinfo=UTC)  # three weeks over a month boundary
DAYS = 21
URLS = [f"https://example.com/{p}" for p in "abcdef"]
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15",
    "Mozilla/5.0",  # Apple MPP (opens)
    "Mozilla/5.0 (compatible; GoogleImageProxy)",
    "python-requests/2.32",
    "",
]
TABLES = {
    "stats_hour": "SELECT tenant_id, hour, kind, reason, n FROM stats_hour WHERE n <> 0",
    "stats_link_day": "SELECT * FROM stats_link_day WHERE clicks <> 0 OR human_clicks <> 0",
    "stats_link_hour": "SELECT * FROM stats_link_hour WHERE clicks <> 0 OR human_clicks <> 0",
    "stats_activity": "SELECT * FROM stats_activity",
    "stats_uniq": "SELECT * FROM stats_uniq WHERE n <> 0",
    "stats_email": "SELECT * FROM stats_email",
    "stats_day": "SELECT * FROM stats_day WHERE n <> 0",
    "stats_cohort": "SELECT * FROM stats_cohort WHERE n <> 0",
}

# The count column of each rollup whose rows go back to zero when retention deletes hits.
ZERO_CELLS = {
    "stats_hour": "n",
    "stats_uniq": "n",
    "stats_day": "n",
    "stats_cohort": "n",
    "stats_link_day": "clicks",
    "stats_link_hour": "clicks",
}


def same(a: Any, b: Any) -> bool:
    """Equal; floats to 1e-9 relative (a mean summed in another order)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


async def rollups(db: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {name: sorted(tuple(r) for r in await db.fetch(sql)) for name, sql in TABLES.items()}


async def assert_rollups_true(db: asyncpg.Connection) -> None:
    """The rollups as the triggers kept them equal a rebuild from the rows."""
    kept = await rollups(db)
    tr = db.transaction()
    await tr.start()
    try:
        await db.execute("SELECT belfry_stats_backfill()")
        rebuilt = await rollups(db)
    finally:
        await tr.rollback()
    for name in TABLES:
        assert kept[name] == rebuilt[name], name


def random_scopes(rng: random.Random, start: datetime, days: int, n: int) -> list[Scope]:
    scopes = []
    for i in range(n):
        at = start + timedelta(minutes=rng.randrange(0, days * 1440))
        if i % 4 == 0:  # whole days
            at = at.replace(hour=0, minute=0)
        span = timedelta(minutes=rng.randrange(60, days * 1440))
        bucket = rng.choice(["hour", "day"])
        scopes.append(Scope(at, at + span, bucket, None))
    # Everything; and a range with a whole day in its middle only.
    scopes.append(Scope(start - timedelta(days=3), start + timedelta(days=days + 3), "day", None))
    scopes.append(
        Scope(start + timedelta(hours=13), start + timedelta(days=2, hours=1), "hour", None)
    )
    return scopes


async def assert_answers_equal(db: asyncpg.Connection, tenant: str, scopes: list[Scope]) -> None:
    used = 0
    for scope in scopes:
        async with db.transaction(readonly=True, isolation="repeatable_read"):
            fast = await tenant_stats(db, tenant, scope, 4)
            slow = await tenant_stats(db, tenant, scope, 4, raw=True)
        diff = {k: (fast[k], slow[k]) for k in fast if not same(fast[k], slow[k])}
        assert not diff, repr((scope, diff))
        used += rollup_bounds(scope) is not None
    assert used >= len(scopes) // 2  # most ranges did exercise the rollups


def envelope(
    rng: random.Random, tenant: str, email: str, at: datetime, kind: str, url: str | None = None
) -> Envelope:
    data: dict[str, Any] = {"email_id": email, "ip": rng.choice(["203.0.113.9", "17.1.2.3"])}
    ua = rng.choice(UAS)
    if ua:
        data["ua"] = ua
    if rng.random() < 0.05:
        data["hints"] = {"purpose": "prefetch"}
    if kind == "click":
        data["url"] = url or rng.choice(URLS)
    kind_type = HIT_CLICK_V2 if kind == "click" else HIT_OPEN_V2
    return Envelope(str(uuid.uuid4()), kind_type, tenant, at, at, data, {})


async def register(db: asyncpg.Connection, rng: random.Random, tenant: str, n: int) -> dict:
    emails = {}
    for i in range(n):
        created = BASE + timedelta(seconds=rng.randrange(0, DAYS * 86400))
        emails[f"m{i}"] = created
        await seed_email(db, tenant, f"m{i}", created)
    return emails


def hits(rng: random.Random, tenant: str, emails: dict[str, datetime], n: int) -> list[Envelope]:
    """Hits around each email's registration: some before it, most days after; some
    clicks seconds after it (click_too_soon) and pairs of links at once (a burst)."""
    out = []
    names = [*emails, "stranger1", "stranger2"]
    for _ in range(n):
        email = rng.choice(names)
        created = emails.get(email, BASE)
        kind = "click" if rng.random() < 0.4 else "open"
        if kind == "click" and rng.random() < 0.1:
            at = created + timedelta(seconds=rng.randrange(0, 10))
        else:
            at = created + timedelta(seconds=rng.randrange(-2 * 86400, 9 * 86400))
        out.append(envelope(rng, tenant, email, at, kind))
        if kind == "click" and rng.random() < 0.1:  # another link of it, within a second
            other = envelope(rng, tenant, email, at + timedelta(milliseconds=300), "click")
            out.append(other)
    return out


async def store_with_redeliveries(
    store: PostgresEventStore, rng: random.Random, events: list[Envelope]
) -> None:
    """Batches of random size; a third are sent twice, some with the next batch's head."""
    i = 0
    while i < len(events):
        size = rng.randrange(1, 60)
        batch = events[i : i + size]
        await store.insert_hits(batch)
        if rng.random() < 0.33:
            await store.insert_hits(batch + events[i + size : i + size + 5])
        i += size


@pytest.fixture
async def store(database_url: str) -> Any:
    s = PostgresEventStore(Database(database_url), migrate=False)
    yield s
    await (await s.db.pool()).close()


async def test_rollups_equal_the_events_scan_with_redeliveries(
    db: asyncpg.Connection, store: PostgresEventStore
) -> None:
    rng = random.Random(16)
    emails = await register(db, rng, "acme", 60)
    await register(db, rng, "globex", 5)  # another tenant: never in acme's figures
    events = hits(rng, "acme", emails, 1500) + hits(rng, "globex", {"m0": BASE}, 100)
    rng.shuffle(events)
    await store_with_redeliveries(store, rng, events)
    stored = await db.fetchval("SELECT count(*) FROM events")
    assert stored == len(events)  # each once
    relabelled = await db.fetchval(
        "SELECT count(*) FROM events"
        " WHERE verdict_reason IN ('click_too_soon', 'all_links_at_once')"
    )
    assert relabelled > 0  # verdict updates went through the rollups too
    await assert_rollups_true(db)
    await assert_answers_equal(db, "acme", random_scopes(rng, BASE, DAYS, 40))


async def test_two_writers_at_once_count_each_event_once(
    db: asyncpg.Connection, database_url: str
) -> None:
    rng = random.Random(7)
    emails = await register(db, rng, "acme", 30)
    events = hits(rng, "acme", emails, 1200)
    stores = [PostgresEventStore(Database(database_url), migrate=False) for _ in range(2)]
    try:
        # Both push every event, in different batches and orders, at the same time.
        orders = [list(events), list(reversed(events))]
        await asyncio.gather(
            *(
                store_with_redeliveries(s, random.Random(i), o)
                for i, (s, o) in enumerate(zip(stores, orders, strict=True))
            )
        )
    finally:
        for s in stores:
            await (await s.db.pool()).close()
    assert await db.fetchval("SELECT count(*) FROM events") == len(events)
    await assert_rollups_true(db)
    await assert_answers_equal(db, "acme", random_scopes(rng, BASE, DAYS, 12))


async def test_erasure_keeps_the_rollups_true(
    db: asyncpg.Connection, store: PostgresEventStore
) -> None:
    rng = random.Random(3)
    emails = await register(db, rng, "acme", 20)
    await store_with_redeliveries(store, rng, hits(rng, "acme", emails, 600))
    # Erase two recipients: their events and their registration.
    for email in ("m1", "m2"):
        await db.execute("DELETE FROM events WHERE tenant_id = 'acme' AND email_id = $1", email)
        await db.execute("DELETE FROM emails WHERE tenant_id = 'acme' AND id = $1", email)
    # Erase one human open only (the first of an email: first-open times move).
    await db.execute(
        "DELETE FROM events WHERE (id, occurred_at) IN (SELECT id, occurred_at FROM events"
        " WHERE email_id = 'm3' AND kind = 'open' AND verdict = 'human'"
        " ORDER BY occurred_at LIMIT 1)"
    )
    assert await db.fetchval("SELECT count(*) FROM stats_activity WHERE email_id = 'm1'") == 0
    await assert_rollups_true(db)
    await assert_answers_equal(db, "acme", random_scopes(rng, BASE, DAYS, 12))


NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


async def test_retention_keeps_the_rollups_true(db: asyncpg.Connection) -> None:
    rng = random.Random(5)
    for tenant in ("acme", "globex"):
        await db.execute("INSERT INTO tenants (id) VALUES ($1)", tenant)
    await db.execute(
        """UPDATE tenants SET settings = '{"retention_months": 3}' WHERE id = 'acme'"""
    )
    await db.execute(
        """UPDATE tenants SET settings = '{"retention_months": 8}' WHERE id = 'globex'"""
    )
    rows = []
    for months in (1, 2, 4, 6, 9, 14):
        start = months_before(NOW, months)
        await db.fetchval("SELECT belfry_ensure_events_partition($1)", start)
        for tenant in ("acme", "globex", "stranger"):
            for _ in range(40):
                at = start + timedelta(minutes=rng.randrange(0, 40 * 1440))
                email = f"m{rng.randrange(8)}"  # chains of active days across months
                kind = rng.choice(["open", "click"])
                verdict = rng.choice([None, "human", "machine"])
                url = rng.choice(URLS) if kind == "click" else None
                reason = "scanner" if verdict == "machine" else None
                rows.append(Row(tenant, email, kind, at, verdict, reason, url=url))
    await db.execute("SET session_replication_role = replica")  # also into events_default
    await seed_events(db, [Row("globex", "m1", "open", datetime(2001, 1, 1, tzinfo=UTC))])
    await db.execute("SET session_replication_role = origin")
    await db.execute("SELECT belfry_stats_backfill()")
    await seed_events(db, rows)
    await assert_rollups_true(db)

    lines = await retention.run(db, NOW, dry_run=False)
    assert any(line.startswith("dropped partition") for line in lines), lines
    assert any("rows from events_default" in line for line in lines), lines
    assert any("of tenant acme" in line and not line.startswith("deleted 0") for line in lines)
    await assert_rollups_true(db)
    for table, counted in ZERO_CELLS.items():  # cells back to zero are pruned, not kept
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE {counted} = 0") == 0, table
    year = Scope(NOW - timedelta(days=500), NOW, "day", None)
    for tenant in ("acme", "globex", "stranger"):
        await assert_answers_equal(
            db, tenant, [year, *random_scopes(rng, NOW - timedelta(days=300), 300, 6)]
        )


async def test_migration_backfills_existing_rows(database_url: str, tmp_path: Path) -> None:
    """A database at 0012 with a few thousand rows gets 0013 and 0014: rollups built from
    them."""
    rng = random.Random(11)
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < 13:
            shutil.copy(path, older / path.name)
    name = f"{database_url.rsplit('/', 1)[1]}_m12"
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        db = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/" + name)
        try:
            await apply_migrations(db, older)
            assert await db.fetchval("SELECT to_regclass('stats_hour')") is None
            for i in range(100):
                await seed_email(db, "acme", f"m{i}", BASE + timedelta(hours=5 * i))
            rows = [
                Row(
                    "acme", f"m{rng.randrange(120)}", kind,
                    BASE + timedelta(minutes=rng.randrange(0, DAYS * 1440)),
                    rng.choice([None, "human", "machine"]), None,
                    url=rng.choice(URLS) if kind == "click" else None,
                )
                for kind in rng.choices(["open", "click"], k=3000)
            ]  # fmt: skip
            await seed_events(db, rows)
            assert (await apply_migrations(db))[:2] == [13, 14]  # 0014 from 0013's rollups
            assert await db.fetchval("SELECT sum(n) FROM stats_hour WHERE kind <> 'email'") == 3000
            await assert_rollups_true(db)
            await assert_answers_equal(db, "acme", random_scopes(rng, BASE, DAYS, 10))
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
