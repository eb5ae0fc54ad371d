"""infra/nginx/belfry.conf run by a real nginx in front of two stand-in upstreams: the
tracking paths reach ingest, the rest the api, and the metrics and internal probes are
not reachable from outside in any spelling nginx would normalise to them.

Needs the `nginx` binary (Debian package `nginx`); skipped where it is not installed."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from devtools.children import spawn
from devtools.ports import free_port
from devtools.ready import wait_tcp
from tests.deploy.support import INFRA

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
NOT_PUBLIC = ("/metrics", "/health/detailed", "/readyz", "/livez")


async def _upstream(name: str) -> TestServer:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"upstream": name, "path": request.raw_path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@asynccontextmanager
async def run_nginx(
    tmp_path: Path, ingest_port: int | None, api_port: int | None
) -> AsyncIterator[int]:
    """nginx with belfry.conf, its upstreams pointed at these ports (started servers')
    on 127.0.0.1, started and stopped by devtools (its log in tmp_path); yields its port
    once it accepts connections."""
    assert NGINX is not None, "nginx is not installed (apt-get install nginx)"
    assert ingest_port is not None and api_port is not None, "an upstream is not started"
    port = free_port()
    site = (INFRA / "nginx" / "belfry.conf").read_text()
    site = site.replace("server ingest:8080;", f"server 127.0.0.1:{ingest_port};")
    site = site.replace("server api:8083;", f"server 127.0.0.1:{api_port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp_path / "belfry.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        "daemon off;\nmaster_process off;\nerror_log stderr warn;\npid nginx.pid;\n"
        "events {}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {tmp_path}/belfry.conf;\n}}\n"
    )
    argv = [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    nginx = await spawn("nginx", argv, log=tmp_path / "nginx.log")
    try:
        await wait_tcp("127.0.0.1", port, nginx, timeout=10)
        yield port
    finally:
        await nginx.stop(timeout=10)


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[int]:
    """nginx with belfry.conf, its upstreams pointed at stand-ins; yields its port."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    ingest, api = await _upstream("ingest"), await _upstream("api")
    try:
        async with run_nginx(tmp_path, ingest.port, api.port) as port:
            yield port
    finally:
        await ingest.close()
        await api.close()


async def _get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    """GET `target` sent byte for byte (no client-side normalisation)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: belfry\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return int(lines[0].split()[1]), headers, body


def _unchunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def test_tracking_paths_reach_ingest_and_the_rest_the_api(proxy: int) -> None:
    for target, upstream in [
        ("/acme/pixel/welcome-42.gif", "ingest"),
        ("/acme/click/welcome-42?url=https%3A%2F%2Fexample.com", "ingest"),
        ("/v1/track", "ingest"),
        ("/acme/click-url/welcome-42?url=x", "api"),
        ("/acme/emails", "api"),
        ("/acme/dashboard", "api"),
        ("/health", "api"),
    ]:
        status, _, body = await _get(proxy, target)
        assert status == 200, (target, body)
        assert orjson.loads(body)["upstream"] == upstream, target


@pytest.mark.parametrize("path", NOT_PUBLIC)
async def test_metrics_and_internal_probes_are_not_public(proxy: int, path: str) -> None:
    encoded = re.sub(r"[a-z]", lambda m: f"%{ord(m.group()):02X}", path, count=1)
    for target in (path, f"/{path}", f"{path}?x=1", encoded, f"/acme/..{path}"):
        status, headers, body = await _get(proxy, target)
        assert status == 404, (target, body)
        assert orjson.loads(body) == {"error": "not found"}, target
        assert headers["content-type"] == "application/json"
        assert re.fullmatch(r"nginx", headers["server"]), headers["server"]  # no version


async def test_public_health_stays_public(proxy: int) -> None:
    status, _, body = await _get(proxy, "/health")
    assert status == 200 and orjson.loads(body) == {"upstream": "api", "path": "/health"}
