"""Ingest's pixel fast path (services/ingest/fastpixel.py) over real sockets, the broker
and the writer: it answers and stores a hit exactly as the aiohttp route does, hands
every request it does not take to aiohttp with the connection's order kept, counts like
the middleware, lets a graceful shutdown wait for its answers, and keeps an active
connection open past the keep-alive timeout measured from its connect."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.fastpixel import PixelFastPath
from services.ingest.keys import HOT
from services.ingest.routes.pixel import GIF
from services.ingest.settings import IngestSettings
from shared.httpserver import FAST_PATH, HttpLimits, RunningServer, start_server
from tests.conftest import Started
from tests.integration.helpers import ready, rows
from tests.integration.test_http_hardening import read_response, requests, sample
from tests.support.eventually import eventually
from tests.support.tcpproxy import TcpProxy

Serve = Callable[..., Awaitable[RunningServer]]
PIXEL = "/{tenant}/pixel/{email_id}.gif"
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148"


@pytest.fixture
async def serve(ingest_settings: IngestSettings) -> AsyncIterator[Serve]:
    """Ingest on the guarded server, as `python -m services.ingest` serves it."""
    servers: list[RunningServer] = []

    async def start(limits: HttpLimits | None = None, **overrides: Any) -> RunningServer:
        spool = ingest_settings.spool_dir.with_name(f"spool-{len(servers)}")
        app = create_ingest(replace(ingest_settings, spool_dir=spool, **overrides))
        server = await start_server(app, "127.0.0.1", 0, limits or HttpLimits())
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def answered(server: RunningServer) -> int:
    """Requests the fast path answered (0 when it is off)."""
    path = server.runner.app.get(FAST_PATH)
    return path.answered if isinstance(path, PixelFastPath) else 0


def pixel_request(email_id: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} /acme/pixel/{email_id}.gif HTTP/{version}", "Host: belfry", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Conn:
    """A raw keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: RunningServer) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", server.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        return await read_response(self.reader)

    async def raw_answer(self, body: bool = True) -> bytes:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        if not body:
            return head
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        return head + await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def without_date(answer: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]+\r\n", b"", answer)


async def test_the_fast_path_answers_and_stores_a_hit_as_the_route_does(
    serve: Serve, start_writer: Started, db: asyncpg.Connection
) -> None:
    await ready(await start_writer())
    fast, route = await serve(), await serve(pixel_fast_path=False)
    headers = (f"User-Agent: {UA}", "Sec-Purpose: prefetch", "X-Real-IP: 10.0.0.9")
    answers = {}
    for name, server in (("fast", fast), ("route", route)):
        conn = await Conn.open(server)
        await conn.send(pixel_request(f"same-{name}", *headers))
        answers[name] = await conn.raw_answer()
        conn.close()
    assert answered(fast) == 1 and answered(route) == 0
    assert answers["fast"].endswith(GIF)
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", answers["fast"])
    assert without_date(answers["fast"]) == without_date(answers["route"])
    assert b"Server:" not in answers["fast"]

    stored = {r["email_id"]: dict(r) for r in await rows(db, 2)}
    fast_row, route_row = stored["same-fast"], stored["same-route"]
    differ = {"id", "email_id", "occurred_at", "received_at", "stored_at"}
    assert {k: v for k, v in fast_row.items() if k not in differ} == {
        k: v for k, v in route_row.items() if k not in differ
    }
    assert fast_row["user_agent"] == UA
    assert fast_row["verdict"] == "machine"  # the prefetch hint reached the writer


async def test_it_counts_as_the_middleware_and_the_route_count(serve: Serve) -> None:
    server = await serve()
    conn = await Conn.open(server)
    for i in range(3):
        await conn.send(pixel_request(f"counted-{i}"))
        status, _, body = await conn.answer()
        assert (status, body) == (200, GIF)
    conn.close()
    assert answered(server) == 3
    assert requests(server, PIXEL, "200", method="GET") == 3
    duration = {"service": "ingest", "method": "GET", "route": PIXEL}
    assert sample(server, "http_request_duration_seconds_count", duration) == 3
    assert (
        sample(server, "belfry_ingest_events_total", {"kind": "open", "outcome": "published"}) == 3
    )


# Each: a request the fast path declines, and what aiohttp answers it with.
DECLINED = [
    ("head", pixel_request("h-1", method="HEAD"), 200, b""),
    ("http/1.0", pixel_request("old-1", version="1.0"), 200, GIF),
    ("connection close", pixel_request("close-1", "Connection: close"), 200, GIF),
    ("query", b"GET /acme/pixel/q-1.gif?utm=x HTTP/1.1\r\nHost: b\r\n\r\n", 200, GIF),
    ("percent", b"GET /acme/pixel/p%2D1.gif HTTP/1.1\r\nHost: b\r\n\r\n", 200, GIF),
    ("bad id", b"GET /ACME/pixel/e1.gif HTTP/1.1\r\nHost: b\r\n\r\n", 404, None),
    (
        "traceparent",
        pixel_request("t-1", "traceparent: 00-" + "1" * 32 + "-" + "2" * 16 + "-01"),
        200,
        GIF,
    ),
    ("body", pixel_request("b-1", "Content-Length: 2") + b"{}", 200, GIF),
    ("other route", b"GET /livez HTTP/1.1\r\nHost: b\r\n\r\n", 200, None),
    ("malformed", b"GET /acme/pixel/m.gif HTTP/1.1\r\nBad Header\r\n\r\n", 400, None),
    ("non-ascii", pixel_request("n-1", "User-Agent: caf\u00e9"), 200, GIF),
]


@pytest.mark.parametrize(
    ("request_bytes", "status", "body"),
    [case[1:] for case in DECLINED],
    ids=[case[0] for case in DECLINED],
)
async def test_requests_it_declines_are_answered_by_aiohttp(
    serve: Serve, request_bytes: bytes, status: int, body: bytes | None
) -> None:
    server = await serve()
    conn = await Conn.open(server)
    await conn.send(request_bytes)
    if request_bytes.startswith(b"HEAD"):
        got = await conn.raw_answer(body=False)
        got_status, headers, got_body = int(got.split()[1]), {}, b""
    else:
        got_status, headers, got_body = await conn.answer()
    assert got_status == status
    if body is not None:
        assert got_body == body
    else:
        assert headers["content-type"].startswith("application/json")
    assert answered(server) == 0
    if status < 400 and b"close" not in request_bytes and b"HTTP/1.0" not in request_bytes:
        # aiohttp now owns the connection, and serves the next pixel on it.
        await conn.send(pixel_request("after-1"))
        assert (await conn.answer())[2] == GIF
        assert answered(server) == 0
    conn.close()


async def test_a_head_in_two_reads_and_pipelined_requests_keep_their_order(
    serve: Serve, start_writer: Started, db: asyncpg.Connection
) -> None:
    await ready(await start_writer())
    server = await serve()
    split = await Conn.open(server)
    whole = pixel_request("split-1")
    await split.send(whole[:20])
    await asyncio.sleep(0.05)  # a second read, not one coalesced segment
    await split.send(whole[20:])
    assert (await split.answer())[2] == GIF

    piped = await Conn.open(server)
    await piped.send(pixel_request("pipe-1") + pixel_request("pipe-2", method="HEAD"))
    first, second = await piped.answer(), await piped.raw_answer(body=False)
    assert first[2] == GIF
    assert second.startswith(b"HTTP/1.1 200") and second.endswith(b"\r\n\r\n")  # HEAD
    await asyncio.wait_for(rows(db, 2), 15)
    assert answered(server) == 0
    split.close()
    piped.close()


async def serve_behind(
    serve: Serve, proxy: TcpProxy, settings: IngestSettings, confirm_timeout: float
) -> tuple[RunningServer, Conn]:
    """Ingest publishing through `proxy`, and a connection whose first pixel was
    confirmed (so the broker is known good before the test freezes it)."""
    common = replace(settings.common, amqp_url=proxy.url_for(settings.common.amqp_url))
    server = await serve(common=common, confirm_timeout=confirm_timeout)
    conn = await Conn.open(server)
    await conn.send(pixel_request("warm-1"))
    assert (await conn.answer())[2] == GIF
    return server, conn


async def until(value: Callable[[], int], want: int, what: str) -> None:
    async def probe() -> int:
        return value()

    await eventually(probe, lambda n: n == want, what=what)


def fast_path(server: RunningServer) -> PixelFastPath:
    path = server.runner.app[FAST_PATH]
    assert isinstance(path, PixelFastPath)
    return path


async def test_bytes_arriving_while_an_answer_waits_are_answered_after_it(
    serve: Serve,
    start_writer: Started,
    db: asyncpg.Connection,
    rabbit_proxy: TcpProxy,
    ingest_settings: IngestSettings,
) -> None:
    """The second hit waits for its confirm (the broker frozen); the request after it,
    one for aiohttp, must not be answered before it."""
    await ready(await start_writer())
    server, conn = await serve_behind(serve, rabbit_proxy, ingest_settings, 5.0)
    path = fast_path(server)
    rabbit_proxy.freeze()
    await conn.send(pixel_request("held-1"))
    await until(lambda: path.waiting, 1, "the pixel awaiting its confirm")
    await conn.send(b"GET /livez HTTP/1.1\r\nHost: b\r\n\r\n")
    await until(lambda: path.holding, 1, "the next request held")
    rabbit_proxy.thaw()
    first, second = await conn.answer(), await conn.answer()
    assert first[2] == GIF, "the held pixel is answered first"
    assert second[1]["content-type"].startswith("application/json")
    assert (path.answered, path.waiting, path.holding) == (2, 0, 0)
    stored = await rows(db, 2)
    assert {r["email_id"] for r in stored} == {"warm-1", "held-1"}
    conn.close()


async def test_a_graceful_shutdown_waits_for_a_fast_answer(
    serve: Serve, rabbit_proxy: TcpProxy, ingest_settings: IngestSettings
) -> None:
    server, conn = await serve_behind(serve, rabbit_proxy, ingest_settings, 1.0)
    path = fast_path(server)
    rabbit_proxy.freeze()  # the next hit is answered after its confirm times out (spooled)
    await conn.send(pixel_request("last-1"))
    await until(lambda: path.waiting, 1, "the pixel awaiting its confirm")
    closing = asyncio.create_task(server.close())
    status, _, body = await conn.answer()
    assert (status, body) == (200, GIF)
    rabbit_proxy.thaw()
    await closing
    assert sample(server, "belfry_ingest_events_total", {"kind": "open", "outcome": "spooled"}) == 1
    conn.close()


async def test_an_active_connection_outlives_the_keepalive_timeout(serve: Serve) -> None:
    """The idle clock restarts at every fast answer: a connection asking every 0.1 s
    stays open past 0.4 s, then closes 0.4 s after its last answer."""
    server = await serve(limits=HttpLimits(keepalive_timeout=0.4))
    conn = await Conn.open(server)
    started = time.monotonic()
    for i in range(10):
        await conn.send(pixel_request(f"alive-{i}"))
        assert (await conn.answer())[2] == GIF
        await asyncio.sleep(0.1)
    assert time.monotonic() - started > 0.8
    last = time.monotonic()
    assert await asyncio.wait_for(conn.reader.read(), 10) == b""
    assert 0.2 < time.monotonic() - last < 3
    assert answered(server) == 10


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "route"])
async def test_a_pixel_after_the_publisher_closed_is_still_served(serve: Serve, fast: bool) -> None:
    """The publisher closes after the listener in a shutdown; should a pixel still come
    in between, it is answered (not kept, counted dropped), never a 500 or a reset."""
    server = await serve(pixel_fast_path=fast)
    await server.runner.app[HOT].publisher.close()
    conn = await Conn.open(server)
    await conn.send(pixel_request("late-1"))
    assert (await conn.answer())[::2] == (200, GIF)
    assert answered(server) == (1 if fast else 0)
    assert sample(server, "belfry_ingest_events_total", {"kind": "open", "outcome": "dropped"}) == 1
    conn.close()
