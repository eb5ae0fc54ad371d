"""Live updates: a dashboard left open in headless Chromium shows hits stored after it
loaded, at its next poll. Driven over the DevTools protocol (aiohttp's websocket client),
so the test reads the DOM of the running page rather than a one-off dump."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.api.conftest import Row, new_tenant, seed_events
from tests.api.test_dashboard_browser import CHROMIUM
from tests.conftest import Started
from tests.support.eventually import eventually
from tests.support.processes import free_port

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


class Page:
    """One tab over the DevTools protocol: evaluate JavaScript, get the value back."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def evaluate(self, expression: str) -> Any:
        call = next(self.ids)
        await self.ws.send_json(
            {
                "id": call,
                "method": "Runtime.evaluate",
                "params": {"expression": expression, "returnByValue": True},
            }
        )
        while True:
            reply = await asyncio.wait_for(self.ws.receive_json(), 10)
            if reply.get("id") == call:
                return reply["result"]["result"].get("value")

    async def metric(self, name: str) -> str:
        value = await self.evaluate(
            f"(document.querySelector('[data-metric=\"{name}\"]') || {{}}).textContent || ''"
        )
        return str(value)


@pytest.fixture
async def open_page(tmp_path: Path) -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []
    sessions: list[aiohttp.ClientSession] = []

    async def open_(url: str) -> Page:
        assert CHROMIUM is not None
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless=new",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--remote-debugging-port={port}",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),
            url,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        procs.append(proc)
        http = aiohttp.ClientSession()
        sessions.append(http)

        async def pages() -> list[dict[str, Any]]:
            try:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    found: list[dict[str, Any]] = await resp.json()
            except aiohttp.ClientError:
                return []
            return [t for t in found if t.get("type") == "page" and t["url"].startswith(url[:30])]

        (target, *_) = await eventually(pages, bool, timeout=30, what="chromium's page target")
        return Page(await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0))

    yield open_
    for http in sessions:
        await http.close()
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_an_open_dashboard_shows_new_hits_at_its_next_poll(
    db: asyncpg.Connection, start_api: Started, open_page: Any
) -> None:
    key = await new_tenant(db, "live")
    now = datetime.now(UTC)
    await seed_events(db, [Row("live", "e1", "open", now - timedelta(minutes=5), "human")])
    api = await start_api(dashboard_poll_seconds=1)
    base = str(api.make_url("")).rstrip("/")
    page = await open_page(f"{base}/live/dashboard#key={key}")

    await eventually(lambda: page.metric("opens"), lambda text: text == "1", what="first render")
    await seed_events(
        db,
        [
            Row("live", "e2", "open", now, "human"),
            Row("live", "e3", "open", now, "machine", "apple_mpp"),
        ],
    )
    await eventually(
        lambda: page.metric("opens"), lambda text: text == "3", timeout=10, what="a poll"
    )
    assert await page.metric("human-opens") == "2"
    assert await page.metric("split-machine") == "1"
