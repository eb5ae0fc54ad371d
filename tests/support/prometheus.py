"""A real `prometheus` (Debian's package, installed by `make test`) in a test: a tiny
application serving Prometheus text for it to scrape, and the server itself started on a
config of the test's and stopped after it (devtools: its own process group)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from devtools.children import spawn

# Scrape `target` every second and remote-write to `url` with the token in `token_file`.
REMOTE_WRITE_CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["{target}"]
remote_write:
  - url: {url}/api/v1/write
    authorization:
      credentials_file: {token_file}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"""


@asynccontextmanager
async def exporter(text: str) -> AsyncIterator[str]:
    """An application exposing `text` at /metrics, as prom-client or client_python do;
    yields its `host:port`."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def prometheus(
    config: str, tmp_path: Path, *flags: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """`prometheus` running on `config` (its text), started and stopped by devtools;
    yields the process and its log."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not on PATH: apt-get install prometheus (`make test` does)")
    (tmp_path / "prometheus.yml").write_text(config)
    argv = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        "--web.listen-address=127.0.0.1:0",
        *flags,
    ]
    child = await spawn("prometheus", argv, log=tmp_path / "prometheus.log")
    assert child.log is not None
    try:
        yield child.proc, child.log
    finally:
        await child.stop(timeout=10)
