"""Stats at scale: `GET /{tenant}/stats` over 10M events / 1M emails, with and without a
writer inserting at full speed; and the writer's store throughput with and without the
rollups.

    .venv/bin/python scripts/bench_stats.py                 # the stats benchmark
    .venv/bin/python scripts/bench_stats.py --writer-only   # store throughput, rollups on/off
    .venv/bin/python scripts/bench_stats.py --load-only     # load, keep the database; then
    .venv/bin/python scripts/bench_stats.py --reuse NAME    # measure it (again), keep it

Stats: a fresh database `belfry_benchstats_<random>` (dropped at the end, also on
failure) gets one tenant, `--emails` emails registered over the last year and `--events`
events a few hours to days after each registration (opens and clicks, human / machine /
no verdict, 50 URLs), loaded with generate_series with triggers off, then the rollups
rebuilt by `belfry_stats_backfill()` (as migrations 0013 / 0014 build them from existing
data).
The api app runs in this process on a free port; each range is requested `--requests`
times (after a warm-up) with `from` / `to` off the hour, as the dashboard asks. Then a
writer process pushes batches through the writer's own store (`PostgresEventStore`,
triggers on: rollups kept as in production) and the same requests run again. Unless
`--no-oracle`, each range is also computed once from `events` alone (the old queries)
and compared with the rollups' answer.

Prints a table and writes `bench/results/bench-stats-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.usage import cpu_seconds_by_name  # noqa: E402
from services.api.app import create_app  # noqa: E402
from services.api.keys import ApiDeps  # noqa: E402
from services.api.queries import tenant_stats  # noqa: E402
from services.api.repos.keys import PgKeyRepo  # noqa: E402
from services.api.repos.tenants import PgTenantRepo  # noqa: E402
from services.api.settings import ApiSettings  # noqa: E402
from services.api.tenants import create_tenant, new_key  # noqa: E402
from services.api.timerange import parse_scope  # noqa: E402
from services.writer.store import PostgresEventStore  # noqa: E402
from shared.contracts import HIT_CLICK_V2, HIT_OPEN_V2, Envelope  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.db.migrate import (  # noqa: E402
    MIGRATIONS_DIR,
    apply_migrations,
    ensure_database,
    migrate_url,
)

RESULTS_DIR = ROOT / "bench" / "results"
TENANT = "bench"
URLS = 50
REASONS = "{apple_mpp,image_proxy,scanner,prefetch,click_too_soon}"
HUMAN_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15"
RANGES = {"30d": timedelta(days=30), "1y": timedelta(days=365)}
TARGETS_MS = {"30d": 150.0, "1y": 300.0}

# Email i of n is registered at the i-th nth of the year before $1 (now); its events come
# after it, mostly within hours, a tail up to 10 days (never after now). Events are
# generated email after email and sorted by time in each chunk: stored roughly in time
# order, as a writer stores them.
LOAD_EMAILS = """
INSERT INTO emails (tenant_id, id, created_at)
SELECT $2, 'e' || i,
       $1::timestamptz - interval '365 days' + ((i - 0.5) / $5)::float8 * interval '365 days'
FROM generate_series($3::int, $4::int) i
"""
LOAD_EVENTS = f"""
INSERT INTO events (id, occurred_at, received_at, tenant_id, email_id, kind, ip, user_agent,
                    url, verdict, verdict_reason)
SELECT gen_random_uuid(), at, at, $2, 'e' || email, kind, '203.0.113.9', '{HUMAN_UA}',
       CASE WHEN kind = 'click' THEN 'https://example.com/l' || (i % {URLS}) END,
       CASE WHEN v < 0.15 THEN NULL WHEN v < 0.75 THEN 'human' ELSE 'machine' END,
       CASE WHEN v >= 0.75 THEN ('{REASONS}'::text[])[1 + (i % 5)] END
FROM (
    SELECT i, email, CASE WHEN random() < 0.7 THEN 'open' ELSE 'click' END AS kind,
           random() AS v,
           created + power(random(), 3) * least(interval '10 days', $1::timestamptz - created)
           AS at
    FROM (
        SELECT i, email,
               $1::timestamptz - interval '365 days'
               + ((email - 0.5) / $6)::float8 * interval '365 days' AS created
        FROM (SELECT i, 1 + ((i - 1)::bigint * $6) / $5 AS email
              FROM generate_series($3::int, $4::int) i) n
    ) s
) g
ORDER BY at
"""

# The indexes of migration 0001 on `events`, dropped for the load and built again after.
DROP_INDEXES = """
ALTER TABLE events DROP CONSTRAINT events_pkey;
DROP INDEX events_tenant_time, events_tenant_email_time;
"""
CREATE_INDEXES = """
ALTER TABLE events ADD PRIMARY KEY (id, occurred_at);
CREATE INDEX events_tenant_time ON events (tenant_id, occurred_at);
CREATE INDEX events_tenant_email_time ON events (tenant_id, email_id, occurred_at);
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def db_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def load(url: str, now: datetime, emails: int, events: int) -> tuple[str, dict[str, float]]:
    """The tenant, its emails and events (triggers off), then the rollups; returns the
    API key and the seconds each step took."""
    conn = await asyncpg.connect(url)
    took: dict[str, float] = {}
    try:
        key = await create_tenant(conn, TENANT, "Bench")
        for month in range(-13, 2):
            await conn.execute(
                "SELECT belfry_ensure_events_partition($1)", now + timedelta(days=30 * month)
            )
        # A bulk load: no triggers (the rollups are rebuilt after), and the indexes built
        # once at the end rather than maintained row by row.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute(DROP_INDEXES)
        started = time.perf_counter()
        step = 250_000
        for lo in range(1, emails + 1, step):
            await conn.execute(LOAD_EMAILS, now, TENANT, lo, min(emails, lo + step - 1), emails)
        took["load_emails_s"] = time.perf_counter() - started
        started = time.perf_counter()
        step = 1_000_000
        for lo in range(1, events + 1, step):
            await conn.execute(
                LOAD_EVENTS, now, TENANT, lo, min(events, lo + step - 1), events, emails
            )
            print(f"  events loaded: {min(events, lo + step - 1):,}", flush=True)
        await conn.execute(CREATE_INDEXES)
        took["load_events_s"] = time.perf_counter() - started
        await conn.execute("SET session_replication_role = origin")
        started = time.perf_counter()
        await conn.execute("SELECT belfry_stats_backfill()")
        took["backfill_s"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        took["vacuum_analyze_s"] = time.perf_counter() - started
    finally:
        await conn.close()
    return key, took


def envelopes(tenant: str, emails: int, count: int, now: datetime) -> list[Envelope]:
    """`count` new hits of random registered emails, at `now`, as ingest sends them."""
    out = []
    for _ in range(count):
        n = secrets.randbelow(emails) + 1
        click = secrets.randbelow(10) < 3
        data: dict[str, Any] = {"email_id": f"e{n}", "ip": "203.0.113.9", "ua": HUMAN_UA}
        if click:
            data["url"] = f"https://example.com/l{n % URLS}"
        out.append(
            Envelope(
                str(uuid.uuid4()), HIT_CLICK_V2 if click else HIT_OPEN_V2, tenant, now, now, data,
                {},
            )
        )  # fmt: skip
    return out


async def push(url: str, emails: int, total: int | None, batch: int, stop: Any) -> dict[str, float]:
    """Insert batches through the writer's store until `stop` is set (or `total` rows);
    returns rows, seconds and rows per second."""
    store = PostgresEventStore(Database(url), migrate=False)
    rows, started = 0, time.perf_counter()
    try:
        while (total is None or rows < total) and not (stop is not None and stop.is_set()):
            events = envelopes(TENANT, emails, batch, datetime.now(UTC))
            rows += await store.insert_hits(events)
    finally:
        await (await store.db.pool()).close()
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0}


def writer_process(url: str, emails: int, batch: int, stop: Any, out: Any) -> None:
    out.put(asyncio.run(push(url, emails, None, batch, stop)))


async def measure(base: str, key: str, now: datetime, requests: int) -> dict[str, Any]:
    """p50 / p95 (ms) of each range, `requests` requests after three warm-ups."""
    results: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        for label, span in RANGES.items():
            times = []
            for i in range(requests + 3):
                # `to` moves by seconds, off the hour, as a live dashboard's does.
                to = now - timedelta(minutes=7, seconds=i)
                params = {"from": (to - span).isoformat(), "to": to.isoformat()}
                started = time.perf_counter()
                async with http.get(f"{base}/{TENANT}/stats", params=params, headers=headers) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"stats answered {r.status}: {body[:300]!r}")
                if i >= 3:
                    times.append((time.perf_counter() - started) * 1000)
            results[label] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(pct(times, 0.95), 1),
                "max_ms": round(max(times), 1),
                "requests": len(times),
                "target_p95_ms": TARGETS_MS[label],
                "pass": pct(times, 0.95) <= TARGETS_MS[label],
            }
    return results


async def oracle(url: str, now: datetime) -> dict[str, Any]:
    """Each range from the rollups and from `events` alone: equal, and how long each took."""
    conn = await asyncpg.connect(url)
    await conn.execute("SET jit = off")  # as the stats route
    out: dict[str, Any] = {}
    try:
        for label, span in RANGES.items():
            to = now - timedelta(minutes=7)
            scope, _ = parse_scope({"from": (to - span).isoformat(), "to": to.isoformat()}, now)
            assert scope is not None
            answers, took = [], []
            for raw in (False, True):
                started = time.perf_counter()
                async with conn.transaction(readonly=True, isolation="repeatable_read"):
                    answers.append(await tenant_stats(conn, TENANT, scope, raw=raw))
                took.append(round((time.perf_counter() - started) * 1000, 1))
            out[label] = {"equal": same(*answers), "rollups_ms": took[0], "events_scan_ms": took[1]}
    finally:
        await conn.close()
    return out


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (a mean summed in another order)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


async def serve(url: str) -> tuple[web.AppRunner, str]:
    env = {
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "CLICK_SIGNING_KEYS": "bench:" + secrets.token_urlsafe(24)[:32],
    }
    settings = ApiSettings.from_env(env)
    settings = replace(settings, migrate_on_start=False)
    runner = web.AppRunner(create_app(settings, ApiDeps(self_report=False)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def bench_key(url: str) -> str:
    """A new key of the bench tenant in a database loaded before (`--reuse`)."""
    conn = await asyncpg.connect(url)
    try:
        return await new_key(PgTenantRepo(conn), PgKeyRepo(conn), TENANT, "bench")
    finally:
        await conn.close()


async def stats_bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    report: dict[str, Any] = {}
    if args.reuse:
        key = await bench_key(url)
    else:
        print(f"loading {args.emails:,} emails and {args.events:,} events", flush=True)
        key, report["load"] = await load(url, now, args.emails, args.events)
        print(f"  {report['load']}", flush=True)
    if args.load_only:
        return report
    runner, base = await serve(url)
    try:
        report["idle"] = await measure(base, key, now, args.requests)
        print(f"idle: {report['idle']}", flush=True)
        ctx = multiprocessing.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=writer_process, args=(url, args.emails, args.batch, stop, out))
        proc.start()
        try:
            await asyncio.sleep(2)  # the writer's pool is up and inserting
            report["while_writing"] = await measure(base, key, now, args.requests)
            if proc.exitcode is not None:  # a figure without a writer: not what it says
                raise RuntimeError("the writer process failed (its traceback is above)")
        finally:
            stop.set()
            await asyncio.to_thread(proc.join, 120)
            report["writer"] = out.get(True, 5) if proc.exitcode == 0 else {"failed": True}
        print(f"while writing: {report['while_writing']}", flush=True)
        print(f"writer meanwhile: {report['writer']}", flush=True)
    finally:
        await runner.cleanup()
    if not args.no_oracle:
        report["oracle"] = await oracle(url, now)
        print(f"oracle: {report['oracle']}", flush=True)
    return report


async def writer_bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """The store's throughput on `--writer-events` hits of `--writer-emails` registered
    emails, rollups on (triggers as migrated) and off (triggers dropped: the store before
    0013), and what each row cost Postgres (all its processes' CPU: this machine's)."""
    emails = args.writer_emails
    conn = await asyncpg.connect(url)
    try:
        # Triggers off: each run's belfry_stats_backfill() below counts the emails.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(LOAD_EMAILS, datetime.now(UTC), TENANT, 1, emails, emails)
    finally:
        await conn.close()
    report: dict[str, Any] = {}
    for label in ("rollups", "no_rollups", "rollups_again"):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("TRUNCATE events")  # statement triggers are not row deletes
            await conn.execute("SELECT belfry_stats_backfill()")
            enable = "ENABLE" if label != "no_rollups" else "DISABLE"
            for trigger in ("events_stats_insert", "events_stats_update", "events_stats_delete"):
                await conn.execute(f"ALTER TABLE events {enable} TRIGGER {trigger}")
        finally:
            await conn.close()
        postgres_before = cpu_seconds_by_name(["postgres"], reaped=True)["postgres"]
        report[label] = await push(url, emails, args.writer_events, args.batch, None)
        postgres_s = cpu_seconds_by_name(["postgres"], reaped=True)["postgres"] - postgres_before
        report[label]["postgres_us_per_row"] = 1e6 * postgres_s / max(report[label]["rows"], 1)
        print(f"{label}: {report[label]}", flush=True)
    off = report["no_rollups"]["rows_per_s"]
    on = (report["rollups"]["rows_per_s"] + report["rollups_again"]["rows_per_s"]) / 2
    report["ratio_with_to_without"] = round(on / off, 3) if off else None
    print(f"throughput with rollups / without: {report['ratio_with_to_without']}", flush=True)
    return report


async def migrate(url: str, skip: int | None) -> None:
    """All migrations, or (`--skip N`, to compare the store without a migration) all but
    N."""
    if skip is None:
        await migrate_url(url)
        return
    await ensure_database(url)
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if int(path.name[:4]) != skip:
                shutil.copy(path, Path(tmp) / path.name)
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn, Path(tmp))
        finally:
            await conn.close()


async def main(args: argparse.Namespace) -> int:
    name = args.reuse or f"belfry_benchstats_{secrets.token_hex(5)}"
    url = db_url(args.postgres_url, name)
    if not args.reuse:
        await migrate(url, args.skip)
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "database": name,
        "args": vars(args),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
    }
    try:
        if args.writer_only:
            report["writer_store"] = await writer_bench(args, url)
        else:
            report["stats"] = await stats_bench(args, url)
    finally:
        if args.load_only or args.reuse:
            print(f"kept database {name}: drop it with dropdb")
        else:
            admin = await asyncpg.connect(args.postgres_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
    if args.load_only:
        return 0
    report["loadavg_after"] = os.getloadavg()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    kind = "writer" if args.writer_only else "stats"
    path = RESULTS_DIR / f"bench-{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"written {path}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--emails", type=int, default=1_000_000)
    p.add_argument("--requests", type=int, default=40, help="per range and phase")
    p.add_argument("--batch", type=int, default=2000, help="events per store call")
    p.add_argument("--no-oracle", action="store_true", help="skip the events-scan comparison")
    p.add_argument("--writer-only", action="store_true", help="store throughput only")
    p.add_argument("--writer-events", type=int, default=100_000)
    p.add_argument(
        "--writer-emails",
        type=int,
        default=10_000,
        help="emails the writer's hits go to (1,000,000: mostly first opens, as a campaign's)",
    )
    p.add_argument("--load-only", action="store_true", help="load, keep the database, stop")
    p.add_argument("--reuse", metavar="DATABASE", help="measure a --load-only database again")
    p.add_argument("--skip", type=int, help="every migration but this one (store cost of it)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
