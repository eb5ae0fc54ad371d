"""The dashboard in a real browser: headless Chromium loads `/{tenant}/dashboard#key=...`
from a running api with seeded data, runs the page's script (fetch, render, inline SVG
chart), and the numbers in the rendered DOM are checked against the seeded figures.
Screenshots go to tests/artifacts/. Also: an empty tenant, and a year of data."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import asyncpg
import pytest

from devtools.children import run_to_end
from tests.api.conftest import Row, new_tenant, seed_email, seed_events
from tests.conftest import Started
from tests.support.browser import CHROMIUM, chromium_argv

EMPTY = "\N{EN DASH}"  # what the page shows for a figure that has no value
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


class Rendered(HTMLParser):
    """Text of every element with a data-metric attribute, plus what else we look for."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, str] = {}
        self.links: list[str] = []
        self.chart_paths: list[str] = []
        self.loaded = False
        self._open: list[str | None] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.loaded = a.get("data-loaded") == "true"
        if tag == "tr" and a.get("data-link"):
            self.links.append(a["data-link"] or "")
        if tag == "path" and a.get("class") in ("area-human", "line-clicks"):
            self.chart_paths.append(a.get("d") or "")
        self._open.append(a.get("data-metric"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._open and self._open[-1]:
            self.metrics[self._open[-1]] = self.metrics.get(self._open[-1], "") + data


async def chromium(url: str, profile: Path, *extra: str) -> str:
    """What headless chromium writes on stdout (its stderr is chatter, kept apart in a log
    beside the profile for a failure's message)."""
    argv = chromium_argv(
        profile, "--virtual-time-budget=8000", "--window-size=1280,1320", *extra, url
    )
    out = profile.with_name(profile.name + ".out")
    log = profile.with_name(profile.name + ".log")
    browser = await run_to_end("chromium", argv, log=log, stdout=out, timeout=60)
    assert browser.exit_code == 0, f"chromium ended with {browser.status()}:\n{browser.tail()}"
    return out.read_text()


async def render(url: str, tmp: Path, name: str) -> Rendered:
    """The DOM after the page's script ran; a screenshot of the same view alongside."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"dashboard-{name}.png"
    shot.unlink(missing_ok=True)
    dom = await chromium(url, tmp / name, "--dump-dom", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    page = Rendered()
    page.feed(dom)
    assert page.loaded, "the page never rendered its figures: " + " ".join(page.text)[-500:]
    return page


def number(text: str) -> int:
    return int(text.replace(",", ""))


async def seed_month(db: asyncpg.Connection, now: datetime) -> None:
    """acme, last 30 days: 12 emails; 30 human + 7 Apple MPP + 3 scanner opens; 9 human +
    2 scanner clicks over 3 links."""
    emails = [f"mail{i:02d}" for i in range(12)]
    for i, email in enumerate(emails):
        await seed_email(db, "acme", email, now - timedelta(days=20, hours=i))
    rows = []
    for i in range(30):
        verdict = None if i % 3 == 0 else "human"  # NULL: stored before classification
        rows.append(Row("acme", emails[i % 10], "open", now - timedelta(days=19 - i // 2), verdict))
    for i in range(7):
        rows.append(
            Row(
                "acme",
                emails[i],
                "open",
                now - timedelta(days=18, minutes=i),
                "machine",
                "apple_mpp",
            )
        )
    for i in range(3):
        rows.append(Row("acme", emails[i], "open", now - timedelta(days=20), "machine", "scanner"))
    links = [
        "https://example.com/pricing",
        "https://example.com/blog/launch",
        "https://example.com/",
    ]
    for i in range(9):
        rows.append(
            Row(
                "acme",
                emails[i % 4],
                "click",
                now - timedelta(days=15 - i),
                "human",
                url=links[0 if i < 5 else 1 if i < 8 else 2],
            )
        )
    for _ in range(2):
        rows.append(
            Row(
                "acme",
                emails[5],
                "click",
                now - timedelta(days=20),
                "machine",
                "scanner",
                url=links[2],
            )
        )
    await seed_events(db, rows)


def year_day(day: int) -> tuple[int, int, int]:
    """(human opens, machine opens, human clicks) of a day: a slow season, quieter
    weekends, and growth towards today."""
    human = (
        6 + int(5 * (1 + math.sin(day / 45))) + (364 - day) // 40 - (4 if day % 7 in (1, 2) else 0)
    )
    return human, 1 + day % 4, human // 4


async def seed_year(db: asyncpg.Connection, now: datetime) -> tuple[int, int, int]:
    rows = []
    totals = [0, 0, 0]
    for day in range(364):
        at = now - timedelta(days=day, hours=1)
        human, machine, clicks = year_day(day)
        for k in range(human):
            rows.append(Row("yearly", f"m{day}", "open", at - timedelta(minutes=k), "human"))
        for _ in range(machine):
            rows.append(Row("yearly", f"m{day}", "open", at, "machine", "image_proxy"))
        for k in range(clicks):
            rows.append(
                Row("yearly", f"m{day}", "click", at, "human", url=f"https://example.com/y{k % 3}")
            )
        totals = [totals[0] + human, totals[1] + human + machine, totals[2] + clicks]
    await seed_events(db, rows)
    return totals[0], totals[1], totals[2]


async def test_dashboard_shows_the_seeded_numbers(
    db: asyncpg.Connection, start_api: Started, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    acme = await new_tenant(db, "acme")
    yearly = await new_tenant(db, "yearly")
    empty = await new_tenant(db, "empty")
    await seed_month(db, now)
    year_human, year_opens, year_clicks = await seed_year(db, now)
    api = await start_api()
    base = str(api.make_url("")).rstrip("/")

    month, year, nothing, no_key = await asyncio.gather(
        render(f"{base}/acme/dashboard#key={acme}&range=30d", tmp_path, "month"),
        render(f"{base}/yearly/dashboard#key={yearly}&range=365d", tmp_path, "year"),
        render(f"{base}/empty/dashboard#key={empty}", tmp_path, "empty"),
        chromium(f"{base}/acme/dashboard", tmp_path / "nokey", "--dump-dom"),
    )
    m = month.metrics
    assert number(m["registered"]) == 12
    assert number(m["human-opens"]) == 30 and number(m["opens"]) == 40
    assert number(m["split-human"]) == 30 and number(m["split-machine"]) == 10
    assert number(m["split-machine-apple_mpp"]) == 7 and number(m["split-machine-scanner"]) == 3
    assert number(m["unique-human-opens"]) == 10
    assert number(m["human-clicks"]) == 9 and number(m["clicks"]) == 11
    # 4 of the 12 emails have a human click; 10 have a human open.
    assert m["ctr"] == "33.3%" and m["cto"] == "40.0%"
    assert month.links[0] == "https://example.com/pricing"
    assert m["link-human-clicks"] and m["first-open"].endswith(("h", "d"))

    y = year.metrics
    assert number(y["human-opens"]) == year_human and number(y["opens"]) == year_opens
    assert number(y["human-clicks"]) == year_clicks
    human_area = year.chart_paths[0]
    assert human_area.count("L") >= 2 * 365  # one point per day, both edges of the area

    e = nothing.metrics
    assert number(e["registered"]) == 0 and number(e["opens"]) == 0
    assert e["ctr"] == EMPTY and e["first-open"] == EMPTY
    assert "No opens or clicks in this range yet" in " ".join(nothing.text)
    assert "No clicks in this range yet" in " ".join(nothing.text)

    assert "API key needed" in no_key and 'data-loaded="true"' not in no_key
