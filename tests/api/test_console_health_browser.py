"""The health view in a real browser, on real services: headless Chromium, driven over
the DevTools protocol (so the test can click), opens `/console/health#key=...` of an api
whose console reaches a writer, an ingest and an alerting service, all four running as
processes (as `make run` starts them) on the real broker and database.

The story: Postgres refuses an event (a CHECK constraint), the writer dead-letters it;
the writer is stopped. The page shows the writer down and the rest healthy, the dead
letter with its reason; after the fix (the constraint dropped) the replay button, once
confirmed, sends it back to the writer's queue, and the writer, started again, stores it.
Screenshots go to tests/artifacts/ (not committed: see .gitignore)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from shared.topology import Topology
from tests.api.conftest import new_tenant
from tests.integration.helpers import rows
from tests.integration.test_writer import dlq_depth, hit, publish
from tests.support.browser import CHROMIUM, chromium_tab
from tests.support.eventually import eventually

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


STATUSES = (
    "Object.fromEntries([...document.querySelectorAll('[data-service]')]"
    ".map(e => [e.dataset.service, e.dataset.status]))"
)


def row_depth(queue: str) -> str:
    cell = f"document.querySelector('tr[data-queue=\"{queue}\"] [data-depth]')"
    return f"{cell} && Number({cell}.dataset.depth)"


def click(selector: str) -> str:
    return f"document.querySelector('{selector}').click(), true"


async def queue_depth(amqp: Any, name: str) -> int:
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def test_health_view_shows_a_stopped_writer_and_replays_a_dead_letter(
    db: asyncpg.Connection,
    spawn: Any,
    amqp: aio_pika.abc.AbstractConnection,
    prefix: str,
    tmp_path: Path,
) -> None:
    topo = Topology(prefix)
    await db.execute("ALTER TABLE events ADD CONSTRAINT test_poison CHECK (user_agent <> 'bad')")
    writer, ingest, alerting = await asyncio.gather(
        spawn("writer"), spawn("ingest"), spawn("alerting")
    )
    # The api as `make run` starts it: told where the others are by its environment.
    api = await spawn(
        "api",
        API_MIGRATE="false",
        API_INGEST_URL=ingest.url,
        API_WRITER_URL=writer.url,
        API_ALERTING_URL=alerting.url,
        API_CONSOLE_TIMEOUT_SECONDS="5",  # a busy test machine is slow
        API_DASHBOARD_POLL_SECONDS="1",
    )
    key = await new_tenant(db, "belfry")
    refused = hit("refused", ua="bad")
    await publish(await amqp.channel(), prefix, orjson.dumps([refused]))
    await eventually(lambda: dlq_depth(prefix), lambda n: n == 1, what="a dead letter")
    writer.proc.terminate()
    await writer.proc.wait()

    base = api.url
    dlq = topo.writer_dlq
    async with chromium_tab(tmp_path / "chromium") as page:
        await page.open(f"{base}/console/health#key=blf_000000000000_{'x' * 40}")
        auth = "!document.getElementById('auth').classList.contains('hidden')"
        await page.until(f"document.body && {auth}", "the page asked for a key")
        assert "tenant belfry" in await page.js("document.getElementById('auth').innerText")
        await page.js(f"location.hash = 'key={key}', true")  # pasted: no reload
        await page.until("document.body.dataset.loaded === 'true'", "the page rendered")
        # The page polls each second; on a busy machine a first look may still catch a
        # service starting up (the api's broker connection), so wait for the settled view.
        expected = {"api": "healthy", "ingest": "healthy", "writer": "down", "alerting": "healthy"}
        await eventually(
            lambda: page.js(STATUSES), lambda s: s == expected, what=f"statuses {expected}"
        )
        writer_card = await page.js("document.querySelector('[data-service=writer]').innerText")
        assert "cannot connect: Connection refused" in writer_card
        assert await page.js(row_depth(dlq)) == 1
        email_link = await page.js("document.querySelector('#views a[data-view]').href")
        assert email_link == f"{base}/belfry/dashboard#key={key}"  # the key goes along
        assert (await page.js("document.getElementById('status').textContent")).startswith(
            "1 down · 1 dead letter · updated"
        )
        await page.shot("health-writer-down")
        # A phone's width: nothing wider than the screen but the queue table, which scrolls.
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=390,
            height=844,
            deviceScaleFactor=1,
            mobile=True,
        )
        assert await page.js("document.documentElement.scrollWidth") <= 390
        await page.shot("health-phone")
        await page.send("Emulation.clearDeviceMetricsOverride")

        await page.js(click(f'button[data-action=list][data-queue="{dlq}"]'))
        letters = await page.until(
            "!document.getElementById('letters-panel').classList.contains('hidden')"
            " && document.getElementById('letters').innerText",
            "the dead letters listed",
        )
        assert "test_poison" in letters and refused["id"] in letters

        # Purge asks first; cancelled, nothing is purged.
        await page.js(click(f'button[data-action=purge][data-queue="{dlq}"]'))
        assert await page.js("document.getElementById('confirm-text').textContent") == (
            f"Purge {dlq}? Its 1 dead letter will be deleted for good."
        )
        await page.js(click("#confirm-no"))
        assert await page.js("document.getElementById('confirm').classList.contains('hidden')")

        await db.execute("ALTER TABLE events DROP CONSTRAINT test_poison")  # the fix
        await page.js(click(f'button[data-action=replay][data-queue="{dlq}"]'))
        question = await page.js("document.getElementById('confirm-text').textContent")
        assert question == f"Replay 1 dead letter of {dlq} back to {topo.writer_queue}?"
        await page.shot("health-confirm-replay")
        assert await queue_depth(amqp, dlq) == 1  # nothing happens before the confirmation
        await page.js(click("#confirm-yes"))
        await page.until(
            f"document.body.dataset.lastAction === 'replay:{dlq}'", "the replay answered"
        )
        assert await queue_depth(amqp, dlq) == 0
        assert await queue_depth(amqp, topo.writer_queue) == 1  # back, waiting for a writer
        await page.until(f"{row_depth(topo.writer_queue)} === 1", "the page shows it queued")
        notice = await page.js("document.getElementById('notice').textContent")
        assert notice == f"Replayed 1 dead letter to {topo.writer_queue}."
        await page.shot("health-replayed")

    await spawn("writer")  # the writer back: it stores what was replayed
    [stored] = await rows(db, 1)
    assert str(stored["id"]) == refused["id"] and stored["user_agent"] == "bad"
