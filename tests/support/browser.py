"""A headless Debian Chromium tab driven over the DevTools protocol (a websocket), for
the console's and the dashboard's browser tests: open a page at a window size, evaluate
JavaScript, wait for an expression, take a screenshot into tests/artifacts/."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from devtools.children import spawn
from devtools.ready import Pending, wait_ready
from tests.support.eventually import eventually

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: `send` a DevTools command, `js` an expression's value, `until` it is truthy,
    `open` a URL, `shot` a PNG. Answers are matched to commands by id by one reader."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            doc = orjson.loads(msg.data)
            future = self.pending.pop(doc.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(doc)

    async def send(self, method: str, **params: Any) -> Any:
        n = next(self.ids)
        self.pending[n] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(orjson.dumps({"id": n, "method": method, "params": params}).decode())
        doc = await asyncio.wait_for(self.pending[n], 30)
        assert "error" not in doc, doc
        return doc["result"]

    async def js(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def until(self, expression: str, what: str, timeout: float = 15) -> Any:
        async def probe() -> Any:
            # null while the page is still loading (no body yet), not an error
            return await self.js(
                f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
            )

        return await eventually(probe, bool, timeout=timeout, what=what)

    async def open(self, url: str, width: int = 1280, height: int = 1400) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 500,
        )
        await self.send("Page.navigate", url=url)

    async def shot(self, name: str) -> Path:
        """tests/artifacts/console-<name>.png (not in git)."""
        ARTIFACTS.mkdir(exist_ok=True)
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = ARTIFACTS / f"console-{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        assert path.stat().st_size > 10_000, "the screenshot is (nearly) empty"
        return path


def chromium_argv(profile: Path, *extra: str) -> list[str]:
    """Headless Chromium's command line with its own profile directory, then `extra`."""
    assert CHROMIUM is not None, "chromium is not installed (Debian: apt-get install chromium)"
    return [
        CHROMIUM,
        "--headless=new",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--disable-extensions",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        *(["--no-sandbox"] if os.geteuid() == 0 else []),
        *extra,
    ]


@asynccontextmanager
async def chromium_tab(profile: Path) -> AsyncIterator[Page]:
    """Headless Chromium with its own profile directory, started and stopped by devtools
    (its output in `<profile>.log`); its first tab."""
    argv = chromium_argv(profile, "--remote-debugging-port=0", "about:blank")
    chromium = await spawn("chromium", argv, log=profile.with_name(f"{profile.name}.log"))
    try:
        port = await wait_ready(
            partial(devtools_port, profile), chromium, where="DevToolsActivePort", timeout=30
        )
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            (tab,) = [t for t in targets if t["type"] == "page"]
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=64 << 20) as ws:
                page = Page(ws)
                try:
                    yield page
                finally:
                    page.reader.cancel()
    finally:
        await chromium.stop(timeout=10)


async def devtools_port(profile: Path) -> int:
    """The port Chromium's DevTools listen on (`--remote-debugging-port=0`: its pick),
    from the file it writes into its profile once they do."""
    try:
        text = (profile / "DevToolsActivePort").read_text()
    except FileNotFoundError:
        raise Pending("no DevToolsActivePort file yet") from None
    if "\n" not in text:
        raise Pending(f"DevToolsActivePort being written: {text!r}")
    return int(text.split()[0])
