"""Stats against a seeded dataset whose figures this test computes on its own, in Python,
from the definitions in the README (services.api.queries)."""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.api.keys import ApiDeps
from tests.api.conftest import Row, bearer, new_tenant, seed_email, seed_events
from tests.conftest import Started

FROM = datetime(2026, 3, 1, tzinfo=UTC)
TO = datetime(2026, 3, 8, tzinfo=UTC)
NOW = datetime(2026, 3, 9, 12, tzinfo=UTC)
REASONS = ["apple_mpp", "image_proxy", "scanner", "prefetch", "click_too_soon"]
URLS = [f"https://example.com/{p}" for p in ("a", "b", "c", "d", "e")]


@dataclass
class Email:
    id: str
    created_at: datetime


def verdict(rng: random.Random) -> tuple[str | None, str | None]:
    roll = rng.random()
    if roll < 0.3:
        return None, None  # stored before the classifier: counts as human
    if roll < 0.65:
        return "human", None
    return "machine", rng.choice(REASONS)


def dataset(rng: random.Random) -> tuple[list[Email], list[Row]]:
    emails = [
        Email(f"in{i:03d}", FROM + timedelta(seconds=rng.randrange(0, 7 * 86400 - 3600)))
        for i in range(40)
    ] + [Email(f"old{i}", FROM - timedelta(days=10, hours=i)) for i in range(5)]
    rows: list[Row] = []

    def when(start: datetime) -> datetime:
        # A few minutes before registration (clock skew, imported mail) up to past TO.
        return start + timedelta(
            seconds=rng.randrange(-300, int((TO - start).total_seconds()) + 43200)
        )

    for email in emails:
        for _ in range(rng.randrange(0, 5)):
            v, r = verdict(rng)
            rows.append(Row("acme", email.id, "open", when(email.created_at), v, r))
        for _ in range(rng.randrange(0, 3)):
            v, r = verdict(rng)
            url = rng.choice(URLS)
            rows.append(Row("acme", email.id, "click", when(email.created_at), v, r, url=url))
    for i in range(3):  # hits for ids the api never registered: counted, but not in rates
        rows.append(Row("acme", f"stranger{i}", "open", FROM + timedelta(hours=5 + i)))
        rows.append(Row("acme", f"stranger{i}", "click", FROM + timedelta(hours=6), url=URLS[0]))
    for i in range(20):  # another tenant's: never counted
        at = FROM + timedelta(hours=i)
        rows.append(Row("globex", emails[0].id, "open", at))
        rows.append(Row("globex", emails[0].id, "click", at, url=URLS[1]))
    return emails, rows


def human(row: Row) -> bool:
    return row.verdict != "machine"


def expected(
    emails: list[Email],
    rows: list[Row],
    start: datetime,
    end: datetime,
    bucket: str,
    email_id: str | None = None,
) -> dict[str, Any]:
    """The stats answer, computed from the definitions without SQL."""
    scoped = [
        r
        for r in rows
        if r.tenant == "acme" and start <= r.at < end and email_id in (None, r.email_id)
    ]
    if email_id is None:
        cohort = [e for e in emails if start <= e.created_at < end]
    else:
        cohort = [e for e in emails if e.id == email_id]

    def kind(k: str) -> dict[str, Any]:
        mine = [r for r in scoped if r.kind == k]
        reasons: dict[str, int] = defaultdict(int)
        for r in mine:
            if not human(r):
                reasons[r.reason or "unknown"] += 1
        return {
            "total": len(mine),
            "unique": len({r.email_id for r in mine}),
            "human": sum(human(r) for r in mine),
            "unique_human": len({r.email_id for r in mine if human(r)}),
            "machine": sum(not human(r) for r in mine),
            "machine_by_reason": dict(sorted(reasons.items())),
        }

    opened = clicked = 0
    delays = []
    for email in cohort:
        mine = [r for r in scoped if r.email_id == email.id and human(r)]
        opens = sorted(r.at for r in mine if r.kind == "open")
        opened += bool(opens)
        clicked += any(r.kind == "click" for r in mine)
        if opens and opens[0] >= email.created_at:
            delays.append((opens[0] - email.created_at).total_seconds())

    links: dict[str, dict[str, Any]] = {}
    for r in scoped:
        if r.kind == "click":
            link = links.setdefault(r.url or "", {"clicks": 0, "human_clicks": 0, "emails": set()})
            link["clicks"] += 1
            link["human_clicks"] += human(r)
            link["emails"].add(r.email_id)
    top = sorted(links.items(), key=lambda kv: (-kv[1]["human_clicks"], -kv[1]["clicks"], kv[0]))
    step = timedelta(days=1) if bucket == "day" else timedelta(hours=1)
    series = []
    # Buckets are whole UTC hours/days; the first and last may be partly outside the range.
    at = start.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        at = at.replace(hour=0)
    while at < end:
        inside = [r for r in scoped if at <= r.at < at + step]
        series.append(
            {
                "t": at.isoformat().replace("+00:00", "Z"),
                "human_opens": sum(r.kind == "open" and human(r) for r in inside),
                "machine_opens": sum(r.kind == "open" and not human(r) for r in inside),
                "human_clicks": sum(r.kind == "click" and human(r) for r in inside),
                "machine_clicks": sum(r.kind == "click" and not human(r) for r in inside),
            }
        )
        at += step
    return {
        "tenant": "acme",
        "email_id": email_id,
        "from": start.isoformat().replace("+00:00", "Z"),
        "to": end.isoformat().replace("+00:00", "Z"),
        "bucket": bucket,
        "registered_emails": len(cohort),
        "opens": kind("open"),
        "clicks": kind("click"),
        "rates": {
            "click_through": round(clicked / len(cohort), 6) if cohort else None,
            "click_to_open": round(clicked / opened, 6) if opened else None,
        },
        "first_open_delay_seconds": {
            "median": statistics.median(delays) if delays else None,
            "mean": statistics.fmean(delays) if delays else None,
            "emails": len(delays),
        },
        "top_links": [
            {
                "url": url,
                "clicks": v["clicks"],
                "human_clicks": v["human_clicks"],
                "unique_emails": len(v["emails"]),
            }
            for url, v in top[:10]
        ],
        "series": series,
    }


def same(actual: dict[str, Any], wanted: dict[str, Any]) -> None:
    delay, want_delay = (
        actual.pop("first_open_delay_seconds"),
        wanted.pop("first_open_delay_seconds"),
    )
    assert actual == wanted
    assert delay["emails"] == want_delay["emails"]
    for key in ("median", "mean"):
        if want_delay[key] is None:
            assert delay[key] is None
        else:
            assert delay[key] == pytest.approx(want_delay[key], rel=1e-9)


@pytest.fixture
async def seeded(db: asyncpg.Connection) -> tuple[str, list[Email], list[Row]]:
    emails, rows = dataset(random.Random(20260301))
    key = await new_tenant(db, "acme")
    await new_tenant(db, "globex")
    for email in emails:
        await seed_email(db, "acme", email.id, email.created_at)
    await seed_events(db, rows)
    return key, emails, rows


async def test_stats_match_an_independent_computation(
    seeded: tuple[str, list[Email], list[Row]], start_api: Started
) -> None:
    key, emails, rows = seeded
    api = await start_api(deps=ApiDeps(now=lambda: NOW, self_report=False))
    machine = sum(1 for r in rows if r.tenant == "acme" and not human(r))
    assert machine > 10 and len(rows) > 150  # the dataset exercises every rule

    resp = await api.get(
        "/acme/stats", params={"from": "2026-03-01", "to": "2026-03-08"}, headers=bearer(key)
    )
    assert resp.status == 200
    same(await resp.json(), expected(emails, rows, FROM, TO, "day"))

    day = (FROM + timedelta(days=2), FROM + timedelta(days=3))
    resp = await api.get(
        "/acme/stats",
        params={"from": day[0].isoformat(), "to": day[1].isoformat()},
        headers=bearer(key),
    )
    body = await resp.json()
    assert body["bucket"] == "hour" and len(body["series"]) == 24
    same(body, expected(emails, rows, day[0], day[1], "hour"))

    busiest = max(emails[:40], key=lambda e: sum(r.email_id == e.id for r in rows))
    resp = await api.get(
        "/acme/stats",
        params={"from": "2026-03-01", "to": "2026-03-08", "email_id": busiest.id},
        headers=bearer(key),
    )
    same(await resp.json(), expected(emails, rows, FROM, TO, "day", busiest.id))

    # Default range: the 30 days before now.
    resp = await api.get("/acme/stats", headers=bearer(key))
    body = await resp.json()
    assert body["to"] == "2026-03-09T12:00:00Z" and body["bucket"] == "day"
    same(body, expected(emails, rows, NOW - timedelta(days=30), NOW, "day"))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-03-01T00:00:00"}, "from"),  # no offset
        ({"from": "2026-03-08", "to": "2026-03-01"}, "to"),
        ({"bucket": "week"}, "bucket"),
        ({"email_id": "not an id"}, "email_id"),
        ({"from": "2020-01-01", "to": "2026-01-01", "bucket": "hour"}, "bucket"),
    ],
)
async def test_stats_refuse_bad_queries(
    db: asyncpg.Connection, start_api: Started, query: dict[str, str], field: str
) -> None:
    key = await new_tenant(db, "acme")
    api = await start_api()
    resp = await api.get("/acme/stats", params=query, headers=bearer(key))
    assert resp.status == 400
    assert field in (await resp.json())["fields"]
