"""One host: the console behind infra/nginx/belfry.conf (a real nginx, as compose runs it),
in front of a real api whose console proxies to a real alerting service. Through nginx's
path routing the alerts page loads, its API calls answer, and the alert stream arrives
as it happens (not buffered until the connection ends), in a raw HTTP client and in the
browser.

Needs the `nginx` binary (Debian package `nginx`) and Chromium; skipped without them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.api.settings import ApiSettings
from tests.alerting.conftest import (  # noqa: F401  (fixtures)
    TENANT,
    FakeClock,
    Send,
    StartAlerting,
    alerting_settings,
    clock,
    send_metrics,
    start_alerting,
    webhook_receiver,
)
from tests.alerting.notify.conftest import Receiver
from tests.api.conftest import new_tenant
from tests.api.test_console_alerts import RULE, add_hook, fire, start_console
from tests.api.test_console_alerts_browser import CHROMIUM, Page, browser, row_state  # noqa: F401
from tests.conftest import Started
from tests.deploy.test_nginx import NGINX, run_nginx

pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]

StartNginx = Callable[[TestClient], Awaitable[int]]


@pytest.fixture
async def start_nginx(tmp_path: Path) -> AsyncIterator[StartNginx]:
    """nginx with belfry.conf, the api upstream pointed at a running api, the ingest one
    at a stand-in; gives nginx's port."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(api: TestClient) -> int:
            ingest = TestServer(web.Application(), host="127.0.0.1")
            await ingest.start_server()
            stack.push_async_callback(ingest.close)
            return await stack.enter_async_context(run_nginx(tmp_path, ingest.port, api.port))

        yield start


async def test_console_through_nginx_one_host(
    db: asyncpg.Connection,
    start_api: Started,
    api_settings: ApiSettings,
    start_alerting: StartAlerting,  # noqa: F811 (the imported fixture)
    send_metrics: Send,  # noqa: F811 (the imported fixture)
    clock: FakeClock,  # noqa: F811 (the imported fixture)
    webhook_receiver: Receiver,  # noqa: F811 (the imported fixture)
    start_nginx: StartNginx,
    browser: Page,  # noqa: F811 (the imported fixture)
) -> None:
    key = await new_tenant(db, TENANT)
    alerting = await start_alerting()
    api = await start_console(start_api, api_settings, alerting)
    await add_hook(alerting, key, webhook_receiver)
    port = await start_nginx(api)

    # A raw client through nginx: the stream's first bytes come before any event.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /{TENANT}/console/api/alerts/stream HTTP/1.1\r\nHost: belfry\r\n"
        f"Authorization: Bearer {key}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    assert b": connected" in await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)

    await browser.open(f"http://127.0.0.1:{port}/{TENANT}/console/alerts#key={key}")
    await browser.until("document.body.dataset.stream === 'live'", "the page's stream, via nginx")
    fp = await fire(alerting, send_metrics, clock, key, RULE, service="ingest")

    # Both see the transition while their connections stay open: nginx did not buffer.
    event = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
    while b"event: transition" not in event:
        event = await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
    assert fp.encode() in event
    writer.close()
    await browser.until(f"{row_state(fp)} === 'firing'", "the alert, live through nginx")
