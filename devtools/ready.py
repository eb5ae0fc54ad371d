"""Waiting until a started child is ready: an HTTP URL (usually `/readyz`) answers 200,
a TCP port accepts connections, or any probe of the caller's own succeeds.

Fails fast, with the child's exit status and log tail, when the child dies first, and
after the timeout with the last answer seen, so a failed start says why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from devtools import describe
from devtools.children import Child
from devtools.ports import tcp_refusal

T = TypeVar("T")

READY_TIMEOUT = 30.0
INTERVAL = 0.1
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=3)


class NotReady(RuntimeError):
    """The child never became ready: `last` is the last answer (or error) seen."""

    def __init__(self, message: str, last: str) -> None:
        super().__init__(message)
        self.last = last


class Pending(Exception):
    """What a readiness probe raises while the child is not ready yet; the message says
    why (the last answer), for the NotReady raised when time runs out."""


async def wait_ready(
    probe: Callable[[], Awaitable[T]],
    child: Child | None = None,
    *,
    where: str,
    timeout: float = READY_TIMEOUT,
    interval: float = INTERVAL,
) -> T:
    """What `probe()` returns once it returns instead of raising Pending, tried every
    `interval`; NotReady if `child` exits first or after `timeout`. `where` names what
    is probed (a URL, a port, a file) in the message."""
    name = child.name if child is not None else where
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < timeout:
        if child is not None and child.returncode is not None:
            raise NotReady(died_before_ready(child), f"exited ({child.status()})")
        try:
            return await probe()
        except Pending as exc:
            last = str(exc)
        await asyncio.sleep(interval)
    raise NotReady(f"{name} not ready after {timeout:.0f} s ({where}): {last}", last)


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

    async def ok() -> None:
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise Pending(f"{resp.status} {(await resp.text())[:300]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Pending(describe(exc)) from None

    started = time.monotonic()
    await wait_ready(ok, child, where=url, timeout=timeout, interval=interval)
    return time.monotonic() - started


async def wait_tcp(
    host: str,
    port: int,
    child: Child | None = None,
    *,
    timeout: float = READY_TIMEOUT,
    interval: float = INTERVAL,
) -> float:
    """Seconds until something accepts a TCP connection at host:port (a child that
    has no HTTP probe, e.g. nginx); NotReady if `child` exits first or on timeout."""

    async def accepts() -> None:
        refusal = await tcp_refusal(host, port)
        if refusal is not None:
            raise Pending(refusal)

    started = time.monotonic()
    await wait_ready(accepts, child, where=f"{host}:{port}", timeout=timeout, interval=interval)
    return time.monotonic() - started


def died_before_ready(child: Child) -> str:
    """`<name> exited (status 1) before it was ready`, and its log's last lines."""
    message = f"{child.name} exited ({child.status()}) before it was ready"
    tail = child.tail()
    return f"{message}; the end of {child.log}:\n{tail}" if tail else message
