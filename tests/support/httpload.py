"""A small HTTP/1.1 load generator for fault tests: keep-alive connections over plain
asyncio streams (several times cheaper per request than an HTTP client library, so the
test process takes little of a 2-core machine from the service it loads).

`capacity()` measures what the service answers per second with `connections` requests
always outstanding (closed loop); `Load` offers a fixed rate (open loop) until stopped
and records which request numbers were answered 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        """One GET; the status, or 0 when the connection failed (it reconnects next)."""
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            self._writer.write(f"GET {path} HTTP/1.1\r\nHost: load\r\n\r\n".encode())
            head = await self._reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.index(b"\r\n", at)]) if at >= 0 else 0
            await self._reader.readexactly(length)
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None


async def capacity(
    host: str, port: int, path: Callable[[int], str], seconds: float, connections: int = 64
) -> float:
    """Requests answered 200 per second with `connections` always busy."""
    conns = [_Conn(host, port) for _ in range(connections)]
    deadline = time.monotonic() + seconds
    counter = iter(range(1 << 62))
    ok = 0

    async def worker(conn: _Conn) -> None:
        nonlocal ok
        while time.monotonic() < deadline:
            if await conn.get(path(next(counter))) == 200:
                ok += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return ok / (time.monotonic() - started)


@dataclass
class Load:
    """`rate` requests/s of `path(n)` (n = 0, 1, ...) over `connections` connections,
    from `start()` until `stop()`. A request not yet sent waits in a queue, so the rate
    offered stays fixed while the service is slow (open loop)."""

    host: str
    port: int
    path: Callable[[int], str]
    rate: float
    connections: int = 256
    answered: dict[int, int] = field(default_factory=dict)  # request number -> status
    sent = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _queue: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)
    _stopping: bool = False

    def start(self) -> None:
        conns = [_Conn(self.host, self.port) for _ in range(self.connections)]
        self._tasks = [asyncio.create_task(self._worker(c)) for c in conns]
        self._tasks.append(asyncio.create_task(self._ticker()))

    async def _ticker(self) -> None:
        started = time.monotonic()
        while not self._stopping:
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                self._queue.put_nowait(self.sent)
                self.sent += 1
            await asyncio.sleep(0.005)

    async def _worker(self, conn: _Conn) -> None:
        try:
            while (n := await self._queue.get()) is not None:
                self.answered[n] = await conn.get(self.path(n))
        finally:
            conn.close()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop offering new requests; wait for those sent to be answered."""
        self._stopping = True
        for _ in range(self.connections):
            self._queue.put_nowait(None)
        _done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def ok(self) -> int:
        return sum(1 for status in self.answered.values() if status == 200)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()
