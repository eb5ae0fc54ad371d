"""The observability middleware: route-template metrics, self-report figures, sampled
access logs, probes left alone."""

from __future__ import annotations

import asyncio
import logging
import zlib

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.httpobs import HTTP_STATS, HttpStats, add_observability, truncate_ip
from shared.probes import Health, add_probe_routes
from shared.prom import PROMETHEUS


async def _client(sample: float, tracer: trace.Tracer | None = None) -> TestClient:
    app = web.Application()
    add_probe_routes(app, Health("unit", "0"))
    add_observability(app, "unit-obs", tracer, sample)
    app[READING] = asyncio.Event()

    async def upload(request: web.Request) -> web.Response:
        request.app[READING].set()
        size = 0
        async for chunk in request.content.iter_chunked(1024):
            size += len(chunk)
        return web.json_response({"bytes": size})

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    async def refuse(request: web.Request) -> web.Response:
        raise web.HTTPBadRequest(text="plain words")

    async def go(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    app.router.add_get("/{tenant}/hello/{email_id}", hello)
    app.router.add_get("/boom", boom)
    app.router.add_get("/refuse", refuse)
    app.router.add_get("/go", go)
    app.router.add_post("/upload", upload)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


READING = web.AppKey("reading", asyncio.Event)


def _count(client: TestClient, route: str, status: str, method: str = "GET") -> float:
    """`http_requests_total` of the route on the client's app's own registry."""
    assert client.app is not None
    value = client.app[PROMETHEUS].get_sample_value(
        "http_requests_total",
        {"service": "unit-obs", "method": method, "route": route, "status": status},
    )
    return value or 0.0


def _tracers() -> list[trace.Tracer | None]:
    return [None, TracerProvider().get_tracer("unit")]  # untraced, and every span recorded


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_requests_are_counted_by_route_template_and_probes_are_not() -> None:
    client = await _client(0.0)
    try:
        for i in range(3):
            assert (await client.get(f"/acme/hello/e{i}")).status == 200
        assert (await client.get("/livez")).status == 200
        assert (await client.get("/nowhere")).status == 404
        # The app's own registry: exactly this app's requests.
        assert _count(client, "/{tenant}/hello/{email_id}", "200") == 3
        assert _count(client, "unmatched", "404") == 1
        rate, errors, p95, count = client.app[HTTP_STATS].take()  # type: ignore[index]
        assert count == 4  # 3 hellos + the 404; the probe is not counted
        assert errors == 0.0
        assert rate > 0 and p95 > 0
    finally:
        await client.close()


async def test_server_errors_count_as_errors_in_the_self_report() -> None:
    client = await _client(0.0)
    try:
        assert (await client.get("/boom")).status == 500
        assert (await client.get("/acme/hello/x")).status == 200
        _, errors, _, count = client.app[HTTP_STATS].take()  # type: ignore[index]
        assert (errors, count) == (0.5, 2)
        assert _count(client, "/boom", "500") == 1
    finally:
        await client.close()


async def test_sampled_access_log_lines_carry_route_and_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await _client(1.0)
    try:
        with caplog.at_level(logging.INFO, logger="belfry.access"):
            await client.get("/acme/hello/e9")
            await client.get("/readyz")
        lines = [r for r in caplog.records if r.name == "belfry.access"]
        assert len(lines) == 1
        line = lines[0]
        assert line.__dict__["route"] == "/{tenant}/hello/{email_id}"
        assert line.__dict__["status"] == 200
        assert line.__dict__["tenant"] == "acme"
        assert line.__dict__["email_id"] == "e9"
    finally:
        await client.close()


def test_http_stats_take_resets_the_window() -> None:
    stats = HttpStats()
    for ms in range(1, 101):
        stats.observe(200, ms / 1000)
    _, _, p95, count = stats.take()
    assert count == 100
    assert p95 == pytest.approx(0.096)
    assert stats.take()[3] == 0


@pytest.mark.parametrize(
    ("address", "expected"),
    [("203.0.113.77", "203.0.113.0"), ("2001:db8:abcd:12::1", "2001:db8:abcd::"), ("x", "invalid")],
)
def test_truncate_ip_keeps_only_the_network(address: str, expected: str) -> None:
    assert truncate_ip(address) == expected


async def test_errors_are_json_whoever_raised_them() -> None:
    client = await _client(0.0)
    try:
        for method, path, status in [
            ("GET", "/no/such/route/here", 404),  # aiohttp's router
            ("DELETE", "/acme/hello/e1", 405),
            ("GET", "/refuse", 400),  # a handler's text exception
            ("GET", "/boom", 500),  # a bug: logged, answered, never a traceback page
        ]:
            resp = await client.request(method, path)
            assert resp.status == status, path
            assert resp.content_type == "application/json", path
            assert isinstance((await resp.json())["error"], str)
            if status == 405:
                assert resp.headers["Allow"] == "GET,HEAD"
        resp = await client.get("/go", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/elsewhere"
        assert await (await client.get("/livez")).text()  # probes untouched
    finally:
        await client.close()


@pytest.mark.parametrize("tracer", _tracers(), ids=["untraced", "traced"])
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("deflate", b"this is not deflate" * 20),
        ("gzip", b"\x1f\x8b\x08\x00" + b"\xff" * 64),
        ("deflate", b"\x78\x9c" + b"\xff" * 30),  # a zlib header, then garbage
        ("deflate", zlib.compress(b"x" * 1000)[:5] + b"\x00" * 40),
    ],
    ids=["deflate-garbage", "gzip-garbage", "zlib-header-then-garbage", "deflate-corrupted"],
)
async def test_a_body_that_does_not_match_its_content_encoding_is_a_json_400(
    tracer: trace.Tracer | None, encoding: str, body: bytes
) -> None:
    client = await _client(0.0, tracer)
    try:
        before = _count(client, "/upload", "400", "POST")
        resp = await client.post("/upload", data=body, headers={"Content-Encoding": encoding})
        assert resp.status == 400
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"] == "body does not match its Content-Encoding"
        assert _count(client, "/upload", "400", "POST") == before + 1
        assert _count(client, "/upload", "500", "POST") == 0
        good = zlib.compress(b"abc")
        resp = await client.post("/upload", data=good, headers={"Content-Encoding": "deflate"})
        assert resp.status == 200 and (await resp.json())["bytes"] == 3
    finally:
        await client.close()


@pytest.mark.parametrize("tracer", _tracers(), ids=["untraced", "traced"])
async def test_a_client_hanging_up_mid_upload_is_a_499_logged_at_info_not_a_500(
    tracer: trace.Tracer | None, caplog: pytest.LogCaptureFixture
) -> None:
    client = await _client(0.0, tracer)
    assert client.app is not None and client.port is not None
    try:
        before = _count(client, "/upload", "499", "POST")
        errors_before = _count(client, "/upload", "500", "POST")
        with caplog.at_level(logging.INFO):
            _, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
            writer.write(b"x" * 1000)
            await client.app[READING].wait()
            writer.transport.abort()  # gone mid-body
            for _ in range(200):  # the handler notices on its next read
                if _count(client, "/upload", "499", "POST") > before:
                    break
                await asyncio.sleep(0.01)
        assert _count(client, "/upload", "499", "POST") == before + 1
        assert _count(client, "/upload", "500", "POST") == errors_before
        _, errors, _, _ = client.app[HTTP_STATS].take()
        assert errors == 0.0
        lines = [r for r in caplog.records if r.name.startswith(("belfry", "aiohttp"))]
        assert [(r.levelno, r.getMessage()) for r in lines] == [
            (logging.INFO, "client disconnected")
        ]
    finally:
        await client.close()


async def test_no_answer_carries_the_server_banner() -> None:
    client = await _client(0.0)
    try:
        for method, path in [
            ("GET", "/acme/hello/e1"),
            ("GET", "/livez"),
            ("GET", "/nope"),
            ("GET", "/boom"),
            ("DELETE", "/acme/hello/e1"),
            ("GET", "/metrics"),
        ]:
            resp = await client.request(method, path)
            assert "Server" not in resp.headers, (method, path, resp.headers.get("Server"))
    finally:
        await client.close()
