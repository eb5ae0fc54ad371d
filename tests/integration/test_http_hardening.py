"""The HTTP server under abuse, over real sockets: slow request heads (slowloris) are
closed after the head deadline, connections beyond the cap are refused with a 503, a
normal request is still served meanwhile; requests too malformed for the app get JSON
without aiohttp's banner; a corrupt Content-Encoding body is a 400 on every service; a
client hanging up mid-upload is counted 499, not 500.

Ingest is served the way `python -m services.ingest` serves it (shared.httpserver),
with small limits so the deadlines pass in a fraction of a second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from services.alerting.app import create_app as create_alerting
from services.alerting.keys import AlertingDeps
from services.api.app import create_app as create_api
from services.api.keys import ApiDeps
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from shared.auth import create_key
from shared.httpserver import HttpLimits, RunningServer, start_server
from shared.prom import PROMETHEUS
from shared.settings import CommonSettings
from shared.signing import SigningKeys
from tests.alerting.conftest import FakeClock
from tests.api.conftest import new_tenant
from tests.conftest import Started
from tests.integration.test_health_outages import alerting_settings_for, api_settings_for
from tests.integration.test_prometheus_text import check_metrics
from tests.support.eventually import eventually

HEAD_TIMEOUT = 0.5
Serve = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def serve_ingest(ingest_settings: IngestSettings) -> AsyncIterator[Serve]:
    """Start the ingest app on the guarded server with the given limits."""
    servers: list[RunningServer] = []

    async def start(**limits: Any) -> RunningServer:
        server = await start_server(
            create_ingest(ingest_settings), "127.0.0.1", 0, HttpLimits(**limits)
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def sample(server: RunningServer, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of the served app's own registry (shared.prom)."""
    return server.runner.app[PROMETHEUS].get_sample_value(name, labels or {}) or 0.0


def requests(server: RunningServer, route: str, status: str, method: str = "POST") -> float:
    labels = {"service": "ingest", "method": method, "route": route, "status": status}
    return sample(server, "http_requests_total", labels)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: status, headers (lowercase), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await read_response(reader)
    finally:
        writer.close()


async def closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Seconds from `started` until the server closed the connection without a word."""
    data = await asyncio.wait_for(reader.read(), 10)
    assert data == b"", data
    return time.monotonic() - started


async def get(port: int, path: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        await r.read()
        return r.status


# --- slowloris and the connection cap ---------------------------------------------------


async def test_slow_request_heads_are_closed_at_the_deadline_and_others_still_served(
    serve_ingest: Serve,
) -> None:
    server = await serve_ingest(header_timeout=HEAD_TIMEOUT, max_connections=200)
    timeouts = sample(server, "belfry_http_header_timeouts_total")
    slow = []
    for i in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET /acme/pixel/slow{i}.gif HTTP/1.1\r\nHost: belfry\r\n".encode())
        slow.append((reader, writer, time.monotonic()))

    async def trickle(writer: asyncio.StreamWriter) -> None:
        # A header line every 0.1 s: bytes keep coming, the head never completes.
        try:
            while True:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            return

    trickler = asyncio.create_task(trickle(slow[0][1]))
    # The server answers others while the slow heads are held.
    assert await get(server.port, "/acme/pixel/normal.gif") == 200
    assert await get(server.port, "/livez") == 200

    held = await asyncio.gather(*(closed_after(r, t) for r, _, t in slow))
    await trickler
    assert min(held) >= HEAD_TIMEOUT * 0.9
    assert max(held) < HEAD_TIMEOUT + 3
    assert sample(server, "belfry_http_header_timeouts_total") == timeouts + 40
    for _, writer, _ in slow:
        writer.close()
    await eventually(lambda: _open(server), lambda n: n == 0, what="every connection closed")


async def _open(server: RunningServer) -> int:
    return server.count.open


async def test_the_next_request_head_on_a_kept_alive_connection_has_the_same_deadline(
    serve_ingest: Serve,
) -> None:
    server = await serve_ingest(header_timeout=HEAD_TIMEOUT, keepalive_timeout=30)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /livez HTTP/1.1\r\nHost: belfry\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        # Idle between requests is the keep-alive's business, not the head deadline's.
        await asyncio.sleep(HEAD_TIMEOUT * 2)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: belfry\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        started = time.monotonic()
        writer.write(b"GET /livez HTTP/1.1\r\nHost: bel")  # and no more
        held = await closed_after(reader, started)
        assert HEAD_TIMEOUT * 0.9 <= held < HEAD_TIMEOUT + 3
    finally:
        writer.close()


async def test_connections_beyond_the_cap_get_a_503_and_are_closed(serve_ingest: Serve) -> None:
    server = await serve_ingest(header_timeout=30, max_connections=20)
    refused = sample(server, "belfry_http_refused_connections_total")
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
    await eventually(lambda: _open(server), lambda n: n == 20, what="20 connections held")

    status, headers, body = await raw(server.port, b"GET /livez HTTP/1.1\r\nHost: b\r\n\r\n")
    assert status == 503 and headers["connection"] == "close"
    assert orjson.loads(body) == {"error": "too many connections"}
    assert sample(server, "belfry_http_refused_connections_total") == refused + 1
    assert server.count.open == 20
    assert sample(server, "belfry_http_open_connections") == 20

    for _, writer in idle:
        writer.close()
    await eventually(lambda: _open(server), lambda n: n == 0, what="idle connections gone")
    assert await get(server.port, "/acme/pixel/after.gif") == 200


# --- what never reaches the app ---------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "error"),
    [
        (b"HELLO THERE\r\n\r\n", "malformed request"),
        (b"GET /livez HTTP/1.1\r\nHost: b\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", None),
        (
            b"POST /v1/track HTTP/1.1\r\nHost: b\r\nContent-Encoding: br\r\n"
            b"Content-Length: 4\r\n\r\nabcd",
            "unsupported Content-Encoding",
        ),
    ],
    ids=["garbage-request-line", "header-too-long", "unsupported-encoding"],
)
async def test_requests_too_malformed_for_the_app_get_json_without_a_banner(
    serve_ingest: Serve,
    request_bytes: bytes,
    error: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await serve_ingest()
    with caplog.at_level(logging.INFO):
        status, headers, body = await raw(server.port, request_bytes)
    assert 400 <= status < 500
    assert headers["content-type"] == "application/json"
    assert "server" not in headers
    assert orjson.loads(body)["error"] == (error or "malformed request")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_no_response_of_the_served_ingest_names_the_server_software(
    serve_ingest: Serve,
) -> None:
    server = await serve_ingest()
    for request in (
        b"GET /acme/pixel/e1.gif HTTP/1.1\r\nHost: b\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: b\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: b\r\n\r\n",
        b"POST /v1/track HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}",
    ):
        _, headers, _ = await raw(server.port, request)
        assert "server" not in headers, request


# --- bodies: corrupt encodings, clients hanging up ---------------------------------------


async def test_a_client_hanging_up_mid_track_upload_is_a_499_not_a_500(
    serve_ingest: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve_ingest()
    hung_up, errors = requests(server, "/v1/track", "499"), requests(server, "/v1/track", "500")
    manager = server.runner.server
    assert manager is not None
    with caplog.at_level(logging.INFO):
        started = manager.requests_count
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /v1/track HTTP/1.1\r\nHost: b\r\nContent-Length: 5000\r\n\r\n")
        writer.write(b'[{"type": "open", "tenant": "acme", "email_id": "' + b"x" * 900)
        await writer.drain()

        async def handling() -> int:
            return manager.requests_count

        await eventually(handling, lambda n: n > started, what="the upload reached its handler")
        writer.transport.abort()
        await eventually(
            lambda: _value(requests(server, "/v1/track", "499")),
            lambda n: n == hung_up + 1,
            what="499",
        )
    assert requests(server, "/v1/track", "500") == errors
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert ("INFO", "client disconnected") in records
    assert not [r for r in records if r[0] in ("WARNING", "ERROR")], records
    # The 499 series is valid Prometheus text.
    url = f"http://127.0.0.1:{server.port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    assert 'status="499"' in text
    code, out = await check_metrics(text)
    assert code == 0, out


async def _value(value: float) -> float:
    return value


CORRUPT = b"this is not deflate at all" * 8


async def test_a_corrupt_deflate_body_is_a_json_400_on_the_served_ingest(
    serve_ingest: Serve,
) -> None:
    server = await serve_ingest()
    errors = requests(server, "/v1/track", "500")
    for encoding in ("deflate", "gzip"):
        status, headers, body = await raw(
            server.port,
            b"POST /v1/track HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            + f"Content-Encoding: {encoding}\r\nContent-Length: {len(CORRUPT)}\r\n\r\n".encode()
            + CORRUPT,
        )
        assert status == 400, body
        assert headers["content-type"] == "application/json" and "server" not in headers
        assert orjson.loads(body) == {"error": "body does not match its Content-Encoding"}
    assert requests(server, "/v1/track", "500") == errors


async def test_a_corrupt_deflate_body_is_a_json_400_on_every_service(
    start_app: Any,
    start_writer: Started,
    common: CommonSettings,
    signing: SigningKeys,
    db: asyncpg.Connection,
) -> None:
    """Each service's body-reading route (the writer has none: its answer is a JSON 4xx)."""
    api_key = await new_tenant(db, "acme")
    alerting_key = await create_key(db, "acme")
    api = await start_app(create_api(api_settings_for(common, signing), ApiDeps(self_report=False)))
    alerting = await start_app(
        create_alerting(alerting_settings_for(common), AlertingDeps(clock=FakeClock()))
    )
    writer = await start_writer()
    targets = [
        (api, "/acme/emails", api_key),
        (alerting, "/api/v1/rules", alerting_key),
        (writer, "/api/v1/rules", None),
    ]
    for client, path, key in targets:
        for encoding in ("deflate", "gzip"):
            headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            resp = await client.post(path, data=CORRUPT, headers=headers)
            assert 400 <= resp.status < 500, (path, resp.status, await resp.text())
            assert resp.content_type == "application/json"
            assert "error" in await resp.json()
            assert "Server" not in resp.headers
            if key:
                assert resp.status == 400, path


# --- the services as processes read the limits from the environment -----------------------


@pytest.mark.parametrize("service", ["ingest", "writer"])  # own __main__; run_service
async def test_service_processes_apply_the_limits_from_the_environment(
    spawn: Callable[..., Awaitable[Any]], service: str
) -> None:
    proc = await spawn(service, HTTP_HEADER_TIMEOUT_SECONDS="0.5", HTTP_MAX_CONNECTIONS="4")
    reader, writer = await asyncio.open_connection("127.0.0.1", proc.port)
    started = time.monotonic()
    writer.write(b"GET /livez HTTP/1.1\r\nHost: b\r\n")
    held = await closed_after(reader, started)
    writer.close()
    assert 0.45 <= held < 3.5
    idle = [await asyncio.open_connection("127.0.0.1", proc.port) for _ in range(4)]
    for idle_reader, idle_writer in idle:  # one request each, then kept alive, idle
        idle_writer.write(b"GET /livez HTTP/1.1\r\nHost: b\r\n\r\n")
        assert (await read_response(idle_reader))[0] == 200

    async def refused() -> int:
        try:
            return (await raw(proc.port, b"GET /livez HTTP/1.1\r\nHost: b\r\n\r\n"))[0]
        except ConnectionResetError:
            return 0

    assert await refused() == 503
    assert await refused() == 503
    for _, w in idle:
        w.close()
    _, headers, _ = await eventually(
        lambda: raw(proc.port, b"GET /livez HTTP/1.1\r\nHost: b\r\n\r\n"),
        lambda r: r[0] == 200,
        what="served again",
    )
    assert "server" not in headers
