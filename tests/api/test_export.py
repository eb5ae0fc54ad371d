"""Exports stream: 100k events leave as CSV and NDJSON while the api process's peak
memory barely moves, and every row arrives, in order, with only the tenant's events."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import orjson

from tests.api.conftest import COPY_COLUMNS, bearer, new_tenant
from tests.conftest import Started
from tests.support.processes import Proc

ROWS = 100_000
# Peak RSS growth allowed while exporting everything. Loading the rows instead (asyncpg
# records, then the encoded text) costs ~120 MB here; streaming 2000-row chunks costs
# about 5 (measured).
MAX_GROWTH = 24 * 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current RSS (Linux clear_refs, value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def seed_many(db: asyncpg.Connection) -> datetime:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    records: list[tuple[object, ...]] = [
        (
            uuid.uuid4(),
            start + timedelta(milliseconds=i),
            start + timedelta(milliseconds=i),
            "acme",
            f"email{i % 997}",
            "open" if i % 4 else "click",
            f"198.51.100.{i % 250}",
            ua,
            None if i % 4 else f"https://example.com/p/{i % 13}",
            "machine" if i % 10 == 0 else "human",
            "apple_mpp" if i % 10 == 0 else None,
        )
        for i in range(ROWS)
    ]
    records += [
        (uuid.uuid4(), start, start, "globex", "x", "open", None, None, None, None, None)
        for _ in range(10)
    ]
    await db.copy_records_to_table("events", records=records, columns=COPY_COLUMNS)
    return start


async def test_export_of_100k_events_streams_in_bounded_memory(
    db: asyncpg.Connection, spawn: Callable[..., Awaitable[Proc]]
) -> None:
    key = await new_tenant(db, "acme")
    await new_tenant(db, "globex")
    start = await seed_many(db)
    api = await spawn("api", API_MIGRATE="false")
    pid = api.proc.pid
    async with aiohttp.ClientSession(headers=bearer(key)) as http:
        # Warm up (imports, pool, first query plans) before measuring.
        async with http.get(f"{api.url}/acme/export.csv?email_id=email1") as resp:
            assert resp.status == 200
            await resp.read()
        reset_peak(pid)
        base = status_kb(pid, "VmRSS")

        lines = 0
        head = b""
        last = b""  # a chunk may end between the \r and the \n of a line end
        async with http.get(f"{api.url}/acme/export.csv") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/csv")
            assert "attachment" in resp.headers["Content-Disposition"]
            async for chunk in resp.content.iter_chunked(1 << 16):
                if len(head) < 4096:
                    head += chunk[:4096]
                lines += (last + chunk).count(b"\r\n")
                last = chunk[-1:]
        csv_growth = (status_kb(pid, "VmHWM") - base) * 1024
        assert lines == ROWS + 1  # the header, then every row of acme, none of globex
        reader = csv.DictReader(io.StringIO(head.decode().rsplit("\r\n", 1)[0]))
        first = next(reader)
        assert first["kind"] == "click" and first["email_id"] == "email0"
        assert first["verdict"] == "machine" and first["verdict_reason"] == "apple_mpp"
        assert first["occurred_at"] == start.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        assert first["url"] == "https://example.com/p/0" and first["ip"] == "198.51.100.0"

        reset_peak(pid)
        base = status_kb(pid, "VmRSS")
        count = 0
        previous = ""
        async with http.get(f"{api.url}/acme/export.ndjson") as resp:
            assert resp.headers["Content-Type"].startswith("application/x-ndjson")
            buffer = b""
            async for chunk in resp.content.iter_chunked(1 << 16):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    doc = orjson.loads(line)
                    assert doc["occurred_at"] >= previous  # oldest first
                    previous = doc["occurred_at"]
                    count += 1
        ndjson_growth = (status_kb(pid, "VmHWM") - base) * 1024
        assert buffer == b"" and count == ROWS

    assert csv_growth < MAX_GROWTH, f"CSV export grew the api's peak RSS by {csv_growth >> 20} MB"
    assert ndjson_growth < MAX_GROWTH, f"NDJSON grew peak RSS by {ndjson_growth >> 20} MB"
    print(f"peak RSS growth: csv {csv_growth >> 10} kB, ndjson {ndjson_growth >> 10} kB")


async def test_export_filters_and_refusals(db: asyncpg.Connection, start_api: Started) -> None:
    key = await new_tenant(db, "acme")
    at = datetime(2026, 3, 2, 12, tzinfo=UTC)
    await db.copy_records_to_table(
        "events",
        records=[
            (uuid.uuid4(), at, at, "acme", "e1", "open", None, '=HYPERLINK("x")', None, None, None),
            (
                uuid.uuid4(),
                at + timedelta(days=1),
                at,
                "acme",
                "e2",
                "click",
                None,
                None,
                "https://example.com/",
                "human",
                None,
            ),
        ],
        columns=COPY_COLUMNS,
    )
    api = await start_api()
    resp = await api.get("/acme/export.ndjson?kind=click", headers=bearer(key))
    (doc,) = [orjson.loads(line) for line in (await resp.read()).splitlines()]
    assert doc["email_id"] == "e2" and doc["props"] is None
    resp = await api.get("/acme/export.csv?to=2026-03-03", headers=bearer(key))
    text = await resp.text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["email_id"] for r in rows] == ["e1"]
    assert rows[0]["user_agent"] == '\'=HYPERLINK("x")'  # never a live formula
    resp = await api.get("/acme/export.csv?from=2030-01-01", headers=bearer(key))
    assert (await resp.text()).count("\r\n") == 1  # only the header
    for query in ("kind=view", "from=soon", "email_id=%20"):
        resp = await api.get(f"/acme/export.csv?{query}", headers=bearer(key))
        assert resp.status == 400, query
    resp = await api.get("/acme/export.xml", headers=bearer(key))
    assert resp.status == 404
