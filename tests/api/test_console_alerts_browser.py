"""The console's alerts view and the email view in a real browser (headless Chromium
driven over the DevTools protocol, so the test can click), against a real api and a real
alerting service (real broker and database, fake clock) and a real webhook receiver:

- an alert made to fire appears in the open page through the SSE stream (no reload);
- Ack on the page makes the alert `acknowledged` in the alerting API;
- a silence created on the page (matchers prefilled from the alert) stops the next
  repeat notification the receiver would otherwise get;
- the alert's history (transitions and notifications) and a failed notification's
  replay button work;
- the email view: 7-day chart labelled by day, machine clicks drawn, "1 open" / "1 click",
  and the header of both views fits a 390 px wide window.

Screenshots of each view go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from services.alerting.keys import RELAY
from services.api.settings import ApiSettings
from tests.alerting.conftest import (  # noqa: F401  (fixtures)
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    alerting_settings,
    clock,
    engine_of,
    metric_event,
    send_metrics,
    start_alerting,
    webhook_receiver,
)
from tests.alerting.notify.conftest import Receiver
from tests.api.conftest import Row, bearer, new_tenant, seed_email, seed_events
from tests.api.test_console_alerts import RULE, add_hook, fire, start_console
from tests.conftest import Started
from tests.support.browser import CHROMIUM, Page, chromium_tab
from tests.support.eventually import eventually

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Page]:
    async with chromium_tab(tmp_path / "chromium") as page:
        yield page


def row_state(fp: str) -> str:
    return f"(document.querySelector('tr[data-fp=\"{fp}\"]') || {{}}).dataset?.state || ''"


async def alert_state(alerting: TestClient, key: str, fp: str) -> str:
    resp = await alerting.get(f"/api/v1/alerts/{fp}", headers=bearer(key))
    return str((await resp.json())["state"])


async def test_alerts_view_live_ack_silence_history_replay(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
    send_metrics: Send,  # noqa: F811 (the imported fixture)
    clock: FakeClock,  # noqa: F811 (the imported fixture)
    webhook_receiver: Receiver,  # noqa: F811 (the imported fixture)
    browser: Page,
) -> None:
    clock.now = datetime.now(UTC)  # the page's ranges end at the browser's now
    key = await new_tenant(db, TENANT)
    alerting = await start_alerting()
    api = await start_console(start_api, api_settings, alerting)
    await add_hook(alerting, key, webhook_receiver)
    base = str(api.make_url("")).rstrip("/")
    await browser.open(f"{base}/{TENANT}/console/alerts")  # no key: asks for one
    await browser.until(
        "!document.getElementById('auth').classList.contains('hidden')", "the key form"
    )
    await browser.open(f"{base}/{TENANT}/console/alerts#key={key}&range=24h")
    await browser.until("document.body.dataset.loaded === 'true'", "the page loaded")
    await browser.until("document.body.dataset.stream === 'live'", "the stream connected")

    # Fires while the page is open: it shows up through the stream, not a reload.
    fp = await fire(alerting, send_metrics, clock, key, RULE, service="ingest")
    await browser.until(f"{row_state(fp)} === 'firing'", "the alert, live")
    runbook = await browser.js("document.querySelector('a[data-runbook=true]').href")
    assert runbook == "https://runbooks.example/latency"
    await webhook_receiver.wait(1)
    await browser.shot("alerts-firing")

    # Ack from the page.
    await browser.js(f"document.querySelector('tr[data-fp=\"{fp}\"] [data-action=ack]').click()")
    await eventually(
        lambda: alert_state(alerting, key, fp), lambda s: s == "acknowledged", what="acked"
    )
    await browser.until(f"{row_state(fp)} === 'acknowledged'", "the page shows the ack")

    # A second alert that repeats every minute: one repeat goes out, then a silence
    # made on the page stops the next one.
    repeating = {
        **RULE,
        "name": "QueueBacklog",
        "condition": "backlog > 1",
        "repeat_interval": "1m",
    }
    fp2 = await fire(alerting, send_metrics, clock, key, repeating, service="writer")
    await browser.until(f"{row_state(fp2)} === 'firing'", "the second alert, live")

    def to_backlog() -> int:
        return sum(
            1
            for r in webhook_receiver.requests
            if orjson.loads(r.body)["alerts"][0]["labels"]["alertname"] == "QueueBacklog"
        )

    await eventually(lambda: _now(to_backlog()), lambda n: n == 1, what="the first firing")
    await tick_later(alerting, send_metrics, clock, "writer")
    await eventually(lambda: _now(to_backlog()), lambda n: n == 2, what="the repeat")

    await browser.js(
        f"document.querySelector('tr[data-fp=\"{fp2}\"] [data-action=silence]').click()"
    )
    prefilled = await browser.js(
        "[...document.querySelectorAll('#silence-matchers input')]"
        ".map(i => i.dataset.label + '=' + i.dataset.value)"
    )
    assert {"alertname=QueueBacklog", "service=writer", "team=mail"} <= set(prefilled)
    await browser.js("document.getElementById('silence-duration').value = '30m'")
    await browser.shot("alerts-silence-form")
    await browser.js("document.querySelector('#silence-form button[type=submit]').click()")
    silence_id = await browser.until("document.body.dataset.silenced", "the silence made")
    resp = await alerting.get(f"/api/v1/silences/{silence_id}", headers=bearer(key))
    silence = await resp.json()
    assert silence["state"] == "active" and silence["author"] == "console"

    # The next evaluation (before the next repeat is due) silences it; the one after, when
    # the repeat would be due, sends nothing. (A repeat due at the very evaluation that
    # applies a new silence still goes out: test_console_alerts.py shows that defect.)
    await tick_later(alerting, send_metrics, clock, "writer", seconds=20)
    assert await alert_state(alerting, key, fp2) == "silenced"
    await browser.until(f"{row_state(fp2)} === 'silenced'", "the page shows silenced")
    await tick_later(alerting, send_metrics, clock, "writer")
    await quiet(alerting)
    assert to_backlog() == 2, [
        (orjson.loads(r.body)["status"], orjson.loads(r.body)["alerts"][0]["labels"])
        for r in webhook_receiver.requests
    ]

    # History: transitions and notifications of the first alert.
    await browser.js(
        f"document.querySelector('tr[data-fp=\"{fp}\"] [data-action=history]').click()"
    )
    await browser.until(
        "document.querySelectorAll('#timeline li.ev-notification').length >= 1",
        "a notification in the history",
    )
    text = await browser.js("document.getElementById('timeline').innerText")
    assert "acknowledged" in text and "firing notification to hook (webhook)" in text
    await browser.shot("alerts-history")

    await browser.open(f"{base}/{TENANT}/console/alerts#key={key}", width=390, height=844)
    await fits_390(browser, "alerts-390px")


async def test_failed_notification_replayed_from_the_page(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
    send_metrics: Send,  # noqa: F811 (the imported fixture)
    clock: FakeClock,  # noqa: F811 (the imported fixture)
    webhook_receiver: Receiver,  # noqa: F811 (the imported fixture)
    browser: Page,
) -> None:
    clock.now = datetime.now(UTC)  # the page's ranges end at the browser's now
    key = await new_tenant(db, TENANT)
    alerting = await start_alerting()
    api = await start_console(start_api, api_settings, alerting)
    await add_hook(alerting, key, webhook_receiver)
    webhook_receiver.answers.append((503, {}))  # the only attempt fails
    await fire(alerting, send_metrics, clock, key, RULE, service="ingest")
    await webhook_receiver.wait(1)
    base = str(api.make_url("")).rstrip("/")

    async def failed() -> int:
        rows = await db.fetch("SELECT status FROM notification_deliveries")
        return sum(1 for r in rows if r["status"] == "failed")

    await eventually(failed, lambda n: n == 1, what="the failed delivery logged")
    await browser.open(f"{base}/{TENANT}/console/alerts#key={key}")
    await browser.until(
        "!!document.querySelector('tr[data-status=failed] [data-action=replay]')", "replay button"
    )
    channels = await browser.js("document.getElementById('channels').innerText")
    assert "hook" in channels and "failed" in channels
    await browser.shot("alerts-notifications")
    await browser.js(
        "document.querySelector('tr[data-status=failed] [data-action=replay]').click()"
    )
    await webhook_receiver.wait(2)
    await browser.until(
        "!!document.querySelector('tr[data-status=delivered]')",
        "the replay shown delivered, well before the next 15 s poll",
        timeout=5,
    )


async def test_email_view_days_machine_clicks_plurals_and_390px(
    db: asyncpg.Connection, start_api: Started, browser: Page
) -> None:
    now = datetime.now(UTC)
    key = await new_tenant(db, "acme")
    await seed_email(db, "acme", "m1", now - timedelta(days=5))
    await seed_events(
        db,
        [
            Row("acme", "m1", "open", now - timedelta(days=3), "human"),
            Row("acme", "m1", "click", now - timedelta(days=2), "human", url="https://e.x/a"),
            Row(
                "acme",
                "m1",
                "click",
                now - timedelta(days=2, hours=3),
                "machine",
                "scanner",
                url="https://e.x/a",
            ),
        ],
    )
    api = await start_api()
    base = str(api.make_url("")).rstrip("/")
    await browser.open(f"{base}/acme/dashboard#key={key}&range=7d")
    await browser.until("document.body.dataset.loaded === 'true'", "the email view")
    ticks = await browser.js(
        "[...document.querySelectorAll('#chart text.tick')].map(t => t.textContent)"
    )
    assert ticks and all(not t.endswith(":00") for t in ticks), ticks  # days, not hours
    assert await browser.js(
        "document.querySelector('#chart path.line-machine-clicks').getAttribute('d').length > 0"
    )
    subs = await browser.js("[...document.querySelectorAll('.card .sub')].map(s => s.textContent)")
    assert "1 open in all" in subs and "1 email opened in all" in subs and "2 clicks in all" in subs
    health = await browser.js("document.querySelector('a[data-nav=health]').getAttribute('href')")
    assert health == f"/console/health#key={key}&range=7d"
    await browser.shot("email-7d")

    await browser.open(f"{base}/acme/dashboard#key={key}&range=7d", width=390, height=844)
    await fits_390(browser, "email-390px")


async def fits_390(browser: Page, name: str) -> None:
    """Once rendered, nothing is wider than a 390 px phone screen (no sideways scroll)."""
    await browser.until("document.body.dataset.loaded === 'true'", f"{name} rendered")
    width = await browser.js("document.scrollingElement.scrollWidth")
    await browser.shot(name)
    assert width <= 390, (name, width)


async def _now(value: int) -> int:
    return value


async def tick_later(
    alerting: TestClient, send: Send, at: FakeClock, service: str, seconds: float = 90
) -> None:
    """`seconds` on (default: past the 1 min repeat): the backlog still breaches; evaluate."""
    at.advance(seconds)
    await send(alerting, [metric_event("backlog", 2.0, {"service": service}, at=at.now)])
    await engine_of(alerting).tick()


async def quiet(alerting: TestClient) -> None:
    """The outbox relay has nothing left to publish (what a tick made is out)."""
    assert alerting.app is not None
    relay = alerting.app[RELAY]
    await eventually(relay.pending, lambda n: n == 0, timeout=10, what="outbox empty")
