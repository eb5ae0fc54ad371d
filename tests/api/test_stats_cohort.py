"""The first-open cohort from stats_cohort (migration 0014) against the plain scan of
`events`, on hand-made cases: the median in one bucket or across two, first opens and
clicks in the range's partial last day (before and after `to`), hits before the
registration, registrations in the partial first day, and a first open relabelled or
erased (it moves to a later open, in its bucket or another)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg

from services.api.queries import percentile_cont_median, rollup_bounds
from services.api.timerange import Scope
from tests.api.conftest import Row, seed_email, seed_events
from tests.api.test_stats_rollups import assert_answers_equal, assert_rollups_true

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
# Whole days 3..9 March; partial days at both ends, `to` at various times of 10 March.
SCOPES = [
    Scope(DAY0 + timedelta(hours=13), DAY0 + timedelta(days=8, hours=h), b, None)
    for h, b in ((6, "day"), (9, "day"), (9, "hour"), (23, "day"))
] + [Scope(DAY0, DAY0 + timedelta(days=8), "day", None)]


async def test_median_is_percentile_cont_to_the_bit(db: asyncpg.Connection) -> None:
    rng = random.Random(2)
    for n in (1, 2, 3, 4, 7, 10, 51):
        values = sorted(rng.uniform(0, 1e6) for _ in range(n))
        for below in (0, (n - 1) // 2):  # the whole list, or from the median's rank on
            pg = await db.fetchval(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FROM unnest($1::float8[]) d",
                values,
            )
            assert percentile_cont_median(values[below:], n, below) == pg


async def email(db: asyncpg.Connection, name: str, created: datetime, *hits: Row) -> None:
    await seed_email(db, "acme", name, created)
    await seed_events(db, hits)


def at(days: float, hours: float = 0, seconds: float = 0) -> datetime:
    return DAY0 + timedelta(days=days, hours=hours, seconds=seconds)


async def test_cohort_cases_equal_the_events_scan(db: asyncpg.Connection) -> None:
    reg = at(3, 10)  # a whole registration day of every scope
    # Two delays in two buckets: an even count whose median lies across them.
    await email(db, "near", reg, Row("acme", "near", "open", reg + timedelta(seconds=20)))
    await email(db, "far", reg, Row("acme", "far", "open", reg + timedelta(hours=30)))
    for scope in SCOPES:
        await assert_answers_equal(db, "acme", [scope])
    # First opens / clicks on the partial last day, before and after each `to`.
    for i, hour in enumerate((1, 7, 8.5, 12, 22)):
        name = f"late{i}"
        await email(
            db, name, at(4, i), Row("acme", name, "open", at(8, hour)),
            Row("acme", name, "click", at(8, hour + 0.5), url="https://example.com/a"),
        )  # fmt: skip
    # Hits before registration: the first in range is not the first ever.
    await email(
        db, "early", at(5, 12), Row("acme", "early", "open", at(-1)),
        Row("acme", "early", "open", at(6)), Row("acme", "early", "click", at(5, 11)),
        Row("acme", "early", "click", at(7), verdict="machine", reason="scanner"),
    )  # fmt: skip
    await email(db, "before", at(5), Row("acme", "before", "open", at(4, 23)))
    # Registered in the partial first day, and in the partial last day.
    await email(db, "head", at(0, 15), Row("acme", "head", "open", at(2)))
    await email(db, "tail", at(8, 2), Row("acme", "tail", "open", at(8, 4)))
    # No human hit; a machine open only.
    await email(
        db, "bot", at(6), Row("acme", "bot", "open", at(6, 1), verdict="machine", reason="x")
    )
    rng = random.Random(4)
    for i in range(40):  # enough for the median to fall in a crowded bucket
        created = at(rng.uniform(1, 7))
        hits = [Row("acme", f"r{i}", "open", created + timedelta(seconds=rng.expovariate(1e-4)))]
        await email(db, f"r{i}", created, *hits)
    await assert_rollups_true(db)
    assert all(rollup_bounds(s) is not None for s in SCOPES)
    await assert_answers_equal(db, "acme", SCOPES)


async def test_relabelled_and_erased_first_opens_move_the_cohort(db: asyncpg.Connection) -> None:
    for i in range(6):
        created = at(3, i)
        await email(
            db, f"m{i}", created,
            Row("acme", f"m{i}", "open", created + timedelta(minutes=5), verdict="human"),
            Row("acme", f"m{i}", "open", created + timedelta(seconds=310), verdict="human"),
            Row("acme", f"m{i}", "open", created + timedelta(days=2), verdict="human"),
        )  # fmt: skip
    await assert_answers_equal(db, "acme", SCOPES)
    # m0's first open becomes a machine's: its first is 10 s later (same bucket).
    await db.execute(
        "UPDATE events SET verdict = 'machine', verdict_reason = 'scanner'"
        " WHERE email_id = 'm0' AND occurred_at = $1",
        at(3) + timedelta(minutes=5),
    )
    # m1's first two opens are erased: its first is two days later (another bucket).
    await db.execute(
        "DELETE FROM events WHERE email_id = 'm1' AND occurred_at < $1", at(3, 1, 3600)
    )
    # m2 is erased whole.
    await db.execute("DELETE FROM events WHERE email_id = 'm2'")
    await db.execute("DELETE FROM emails WHERE id = 'm2'")
    await assert_rollups_true(db)
    await assert_answers_equal(db, "acme", SCOPES)


async def test_answers_do_not_depend_on_the_session_time_zone(db: asyncpg.Connection) -> None:
    """Days are UTC days whatever the connection's TimeZone (14 h ahead here)."""
    rng = random.Random(9)
    for i in range(30):
        created = at(rng.uniform(0, 8))
        opened = created + timedelta(hours=rng.uniform(0, 30))
        await email(db, f"z{i}", created, Row("acme", f"z{i}", "open", opened))
    await db.execute("SET TimeZone = 'Pacific/Kiritimati'")
    await assert_answers_equal(db, "acme", SCOPES)
