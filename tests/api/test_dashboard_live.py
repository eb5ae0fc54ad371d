"""Live updates: a dashboard left open in headless Chromium shows hits stored after it
loaded, at its next poll. Driven over the DevTools protocol (tests/support/browser.py),
so the test reads the DOM of the running page rather than a one-off dump."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.api.conftest import Row, new_tenant, seed_events
from tests.conftest import Started
from tests.support.browser import CHROMIUM, Page, chromium_tab
from tests.support.eventually import eventually

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


async def metric(page: Page, name: str) -> str:
    """The text of the page's `[data-metric=name]` element ('' before it is there)."""
    value = await page.js(
        f"(document.querySelector('[data-metric=\"{name}\"]') || {{}}).textContent || ''"
    )
    return str(value)


async def test_an_open_dashboard_shows_new_hits_at_its_next_poll(
    db: asyncpg.Connection, start_api: Started, tmp_path: Path
) -> None:
    key = await new_tenant(db, "live")
    now = datetime.now(UTC)
    await seed_events(db, [Row("live", "e1", "open", now - timedelta(minutes=5), "human")])
    api = await start_api(dashboard_poll_seconds=1)
    base = str(api.make_url("")).rstrip("/")
    async with chromium_tab(tmp_path / "chromium") as page:
        await page.open(f"{base}/live/dashboard#key={key}")

        await eventually(
            lambda: metric(page, "opens"), lambda text: text == "1", what="first render"
        )
        await seed_events(
            db,
            [
                Row("live", "e2", "open", now, "human"),
                Row("live", "e3", "open", now, "machine", "apple_mpp"),
            ],
        )
        await eventually(
            lambda: metric(page, "opens"), lambda text: text == "3", timeout=10, what="a poll"
        )
        assert await metric(page, "human-opens") == "2"
        assert await metric(page, "split-machine") == "1"


async def test_a_key_typed_into_the_form_or_pasted_into_the_fragment_loads_the_figures(
    db: asyncpg.Connection, start_api: Started, tmp_path: Path
) -> None:
    """Both ways a key reaches an open page (common.js onKey): the form, and a fragment
    pasted into the address bar (no reload); the nav links carry it on."""
    key = await new_tenant(db, "keyed")
    await seed_events(db, [Row("keyed", "e1", "open", datetime.now(UTC), "human")])
    api = await start_api()
    page_url = str(api.make_url("/keyed/dashboard"))
    async with chromium_tab(tmp_path / "chromium") as page:
        await page.open(page_url)
        await page.until("!document.getElementById('auth').classList.contains('hidden')", "form")
        await page.js(f"document.getElementById('key-input').value = '{key}', true")
        await page.js("document.querySelector('#auth button[type=submit]').click(), true")
        await eventually(lambda: metric(page, "opens"), lambda t: t == "1", what="typed key")
        assert key in await page.js("document.querySelector('a[data-nav=alerts]').href")
        assert "range=30d" in await page.js("location.hash")

        await page.open(page_url)  # a fresh page, no key
        await page.until("!document.getElementById('auth').classList.contains('hidden')", "form")
        await page.js(f"location.hash = '#key={key}&range=7d', true")
        await eventually(lambda: metric(page, "opens"), lambda t: t == "1", what="pasted key")
        assert await page.js("document.getElementById('auth').classList.contains('hidden')")
        assert await page.js("document.querySelector('#ranges .active').dataset.range") == "7d"
