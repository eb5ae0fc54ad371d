"""Retention: `python -m services.api retention [--dry-run]`.

Events live in monthly partitions `events_YYYY_MM` (plus `events_default`). Each tenant
keeps `retention_months` (its privacy settings; null = keep everything). A tenant's
cutoff is now minus that many calendar months; its events before the cutoff go.

1. Whole partitions: a month partition whose end is at or before the *longest* cutoff of
   all tenants is dropped (cheap: no row-by-row delete, no bloat). If any tenant keeps
   everything, or there are no tenants, no partition is dropped. Events of tenant ids the
   api does not know (ingest records hits for any well-formed id) follow the longest
   retention in force: they go with whole partitions and with the default partition's
   old rows, never sooner.
2. Rows: for each tenant with a retention, `DELETE` its events before its cutoff from
   what stays (Postgres prunes the partitions the range cannot touch).
3. Errors (`errors`, not partitioned) follow the same cutoffs: a tenant's before its own,
   and those of every other tenant id before the longest one in force.

The stats rollups (migration 0013) stay true: deleted rows leave them through the
triggers on `events` (deletes go through the parent table, in bounded chunks), and a
partition's rows are taken out a day at a time in the transaction that drops it.

`plan()` reads and decides; `apply()` acts. A dry run prints the plan with row counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from services.api import privacy
from services.api.repos.tenants import PgTenantRepo

PARTITION_RE = re.compile(r"^events_(\d{4})_(\d{2})$")


def months_before(at: datetime, months: int) -> datetime:
    """`at` minus calendar months, the day clamped to the target month's length."""
    year, month = divmod(at.year * 12 + (at.month - 1) - months, 12)
    month += 1
    days = [
        31,
        29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month - 1]
    return at.replace(year=year, month=month, day=min(at.day, days))


def partition_end(name: str) -> datetime | None:
    """The exclusive upper bound of a monthly partition, from its name."""
    match = PARTITION_RE.match(name)
    if match is None:
        return None
    year, month = int(match[1]), int(match[2])
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


@dataclass
class Plan:
    now: datetime
    # tenant -> cutoff, for tenants with a retention.
    cutoffs: dict[str, datetime] = field(default_factory=dict)
    keep_all: list[str] = field(default_factory=list)
    # The longest cutoff, when every tenant has a retention.
    global_cutoff: datetime | None = None
    drop: list[str] = field(default_factory=list)
    kept_partitions: list[str] = field(default_factory=list)


async def plan(conn: asyncpg.Connection, now: datetime) -> Plan:
    result = Plan(now=now)
    for tenant, stored in (await PgTenantRepo(conn).all_settings()).items():
        months = privacy.effective(stored)["retention_months"]
        if months is None:
            result.keep_all.append(tenant)
        else:
            result.cutoffs[tenant] = months_before(now, int(months))
    partitions = [
        r["name"]
        for r in await conn.fetch(
            "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'events'::regclass ORDER BY 1"
        )
    ]
    if result.cutoffs and not result.keep_all:
        result.global_cutoff = min(result.cutoffs.values())  # the earliest = the longest
    for name in partitions:
        end = partition_end(name)
        if end is not None and result.global_cutoff is not None and end <= result.global_cutoff:
            result.drop.append(name)
        else:
            result.kept_partitions.append(name)
    return result


# Deletes go through `events` (its triggers keep the rollups) at most CHUNK rows at a
# time: the triggers see each statement's rows at once, and memory stays bounded.
CHUNK = 20_000
DELETE_TENANT = """
DELETE FROM events WHERE (id, occurred_at) IN (
    SELECT id, occurred_at FROM events WHERE tenant_id = $1 AND occurred_at < $2 LIMIT $3)
"""
COUNT_TENANT = "SELECT count(*) FROM events WHERE tenant_id = $1 AND occurred_at < $2"
DELETE_DEFAULT = """
DELETE FROM events WHERE (id, occurred_at) IN (
    SELECT id, occurred_at FROM events_default WHERE occurred_at < $1 LIMIT $2)
"""
COUNT_DEFAULT = "SELECT count(*) FROM events_default WHERE occurred_at < $1"
# Rollup cells that went back to zero.
PRUNE_ROLLUPS = (
    "DELETE FROM stats_hour WHERE n = 0",
    "DELETE FROM stats_uniq WHERE n = 0",
    "DELETE FROM stats_link_day WHERE clicks = 0",
    "DELETE FROM stats_day WHERE n = 0",
    "DELETE FROM stats_cohort WHERE n = 0",
    "DELETE FROM stats_link_hour WHERE clicks = 0",
)


DELETE_TENANT_ERRORS = "DELETE FROM errors WHERE tenant_id = $1 AND occurred_at < $2"
COUNT_TENANT_ERRORS = "SELECT count(*) FROM errors WHERE tenant_id = $1 AND occurred_at < $2"
# Errors of ids that are not tenants with a retention (unregistered, or keep-everything ones
# never reach here: then there is no global cutoff).
DELETE_OTHER_ERRORS = (
    "DELETE FROM errors WHERE occurred_at < $1 AND NOT (tenant_id = ANY($2::text[]))"
)
COUNT_OTHER_ERRORS = (
    "SELECT count(*) FROM errors WHERE occurred_at < $1 AND NOT (tenant_id = ANY($2::text[]))"
)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def _delete_chunks(conn: asyncpg.Connection, sql: str, *args: object) -> int:
    """Run a chunked DELETE (its last parameter the chunk size) until nothing is left."""
    total = 0
    while True:
        n = _count(await conn.execute(sql, *args, CHUNK))
        total += n
        if n < CHUNK:
            return total


async def drop_partition(conn: asyncpg.Connection, name: str) -> None:
    """Take the partition's rows out of the rollups, a day at a time, and drop it, in one
    transaction; late inserts into it wait (SHARE lock) so none is dropped uncounted."""
    end = partition_end(name)
    if end is None:
        raise ValueError(f"not a monthly partition: {name}")
    start = datetime(end.year - (end.month == 1), (end.month - 2) % 12 + 1, 1, tzinfo=UTC)
    async with conn.transaction():
        # Queue behind a long query for a bounded time only: writers queue behind us.
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute(f'LOCK TABLE "{name}" IN SHARE MODE')
        day = start
        while day < end:
            await conn.execute(
                "SELECT belfry_stats_forget($1::regclass, $2, $3)",
                name,
                day,
                day + timedelta(days=1),
            )
            day += timedelta(days=1)
        await conn.execute(f'DROP TABLE "{name}"')


async def apply(conn: asyncpg.Connection, p: Plan, *, dry_run: bool) -> list[str]:
    """Carry out (or, dry, only describe) the plan; returns one line per action."""
    lines = []
    verb = "would drop" if dry_run else "dropped"
    for name in p.drop:
        if dry_run:
            rows = await conn.fetchval(f'SELECT count(*) FROM "{name}"')
        else:
            rows = None
            await drop_partition(conn, name)
        detail = f" ({rows} rows)" if rows is not None else ""
        lines.append(f"{verb} partition {name}{detail}: older than every tenant's retention")
    if p.global_cutoff is not None:
        if dry_run:
            n = await conn.fetchval(COUNT_DEFAULT, p.global_cutoff)
        else:
            n = await _delete_chunks(conn, DELETE_DEFAULT, p.global_cutoff)
        if n:
            lines.append(
                f"{'would delete' if dry_run else 'deleted'} {n} rows from events_default"
                f" before {p.global_cutoff.isoformat()}"
            )
    for tenant, cutoff in sorted(p.cutoffs.items()):
        if dry_run:
            n = await conn.fetchval(COUNT_TENANT, tenant, cutoff)
        else:
            n = await _delete_chunks(conn, DELETE_TENANT, tenant, cutoff)
        lines.append(
            f"{'would delete' if dry_run else 'deleted'} {n} rows of tenant {tenant}"
            f" before {cutoff.isoformat()}"
        )
    lines += await _apply_errors(conn, p, dry_run=dry_run)
    if not dry_run:
        for sql in PRUNE_ROLLUPS:
            await conn.execute(sql)
    if p.keep_all:
        lines.append(
            f"kept every partition: no retention (keep everything) for {', '.join(p.keep_all)}"
        )
    if not p.cutoffs and not p.keep_all:
        lines.append("no tenants: nothing to do")
    return lines


async def _apply_errors(conn: asyncpg.Connection, p: Plan, *, dry_run: bool) -> list[str]:
    """Application errors go with the same cutoffs as the tenant's events."""
    lines = []
    verb = "would delete" if dry_run else "deleted"
    for tenant, cutoff in sorted(p.cutoffs.items()):
        if dry_run:
            n = await conn.fetchval(COUNT_TENANT_ERRORS, tenant, cutoff)
        else:
            n = _count(await conn.execute(DELETE_TENANT_ERRORS, tenant, cutoff))
        if n:
            lines.append(f"{verb} {n} errors of tenant {tenant} before {cutoff.isoformat()}")
    if p.global_cutoff is not None:
        known = list(p.cutoffs)
        if dry_run:
            n = await conn.fetchval(COUNT_OTHER_ERRORS, p.global_cutoff, known)
        else:
            n = _count(await conn.execute(DELETE_OTHER_ERRORS, p.global_cutoff, known))
        if n:
            lines.append(
                f"{verb} {n} errors of other tenant ids before {p.global_cutoff.isoformat()}"
            )
    return lines


async def run(conn: asyncpg.Connection, now: datetime, *, dry_run: bool) -> list[str]:
    """Plan, then act. Each drop and each delete is its own short transaction: dropping a
    partition locks the whole `events` table, which must not wait for the deletes."""
    # One retention run at a time (two would race on the same partitions).
    await conn.execute("SELECT pg_advisory_lock(hashtext('belfry-retention'))")
    try:
        return await apply(conn, await plan(conn, now), dry_run=dry_run)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('belfry-retention'))")
