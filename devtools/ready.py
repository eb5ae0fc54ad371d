"""Waiting until a started child is ready: an HTTP URL (usually `/readyz`) answers 200.

Fails fast, with the child's exit status and log tail, when the child dies first, and
after the timeout with the last answer seen, so a failed start says why."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from devtools import describe
from devtools.children import Child

READY_TIMEOUT = 30.0
INTERVAL = 0.1
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=3)


class NotReady(RuntimeError):
    """The child never answered 200: `last` is the last answer (or error) seen."""

    def __init__(self, message: str, last: str) -> None:
        super().__init__(message)
        self.last = last


async def wait_http_ok(
    url: str,
    child: Child | None = None,
    *,
    timeout: float = READY_TIMEOUT,
    interval: float = INTERVAL,
    session: aiohttp.ClientSession | None = None,
) -> float:
    """Seconds until `url` answered 200; NotReady if `child` exits first or on timeout."""
    if session is None:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as own:
            return await wait_http_ok(url, child, timeout=timeout, interval=interval, session=own)
    name = child.name if child is not None else url
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        if child is not None and child.returncode is not None:
            raise NotReady(died_before_ready(child), f"exited ({child.status()})")
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
                last = f"{resp.status} {(await resp.text())[:300]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = describe(exc)
        await asyncio.sleep(interval)
    raise NotReady(f"{name} not ready after {timeout:.0f} s ({url}): {last}", last)


def died_before_ready(child: Child) -> str:
    """`<name> exited (status 1) before it was ready`, and its log's last lines."""
    message = f"{child.name} exited ({child.status()}) before it was ready"
    tail = child.tail()
    return f"{message}; the end of {child.log}:\n{tail}" if tail else message
