"""Fixtures: every test gets its own Postgres database and its own broker topology prefix,
both removed afterwards, so runs never see each other's data and leave the shared
servers as they found them."""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devtools.children import spawn as spawn_child
from devtools.children import stop_all
from devtools.ports import free_port
from devtools.ready import wait_http_ok
from services.ingest.app import create_app as create_ingest
from services.ingest.keys import IngestDeps
from services.ingest.settings import IngestSettings
from services.writer.app import create_app as create_writer
from services.writer.keys import WriterDeps
from services.writer.settings import WriterSettings
from shared.db.migrate import migrate_url
from shared.settings import CommonSettings
from shared.signing import SigningKeys
from shared.topology import Topology, delete_all
from tests.support.processes import Proc
from tests.support.tcpproxy import TcpProxy

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_ID = f"{os.getpid()}{secrets.token_hex(2)}"
_counter = itertools.count()


# A test that uses any of these (directly or through another fixture) talks to the real
# RabbitMQ or Postgres: it is an integration test wherever its file is, so `make unit`
# (`-m "not integration"`) runs every pure test of every folder and nothing else.
SERVER_FIXTURES = frozenset(
    {"template_db", "database_url", "db", "prefix", "amqp", "rabbit_proxy", "pg_proxy"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "/integration/" in str(item.fspath) or fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.integration)


def _db_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def _drop_database(admin: asyncpg.Connection, name: str) -> None:
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
    )
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session")
async def template_db() -> AsyncIterator[str]:
    """A migrated database that each test's database is copied from (fast)."""
    name = f"belfry_t{RUN_ID}_tpl"
    await migrate_url(_db_url(name))
    yield name
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await _drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def database_url(template_db: str) -> AsyncIterator[str]:
    name = f"belfry_t{RUN_ID}_{next(_counter)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield _db_url(name)
        await _drop_database(admin, name)
    finally:
        await admin.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"t{RUN_ID}n{next(_counter)}"
    yield name
    conn = await aio_pika.connect(AMQP_URL)
    try:
        await delete_all(await conn.channel(), Topology(name))
    finally:
        await conn.close()


@pytest.fixture
async def amqp() -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    conn = await aio_pika.connect(AMQP_URL)
    yield conn
    await conn.close()


@pytest.fixture
def signing() -> SigningKeys:
    return SigningKeys.parse("k2:new-secret-0123456789,k1:old-secret-0123456789")


@pytest.fixture
def common(prefix: str, database_url: str) -> CommonSettings:
    return CommonSettings(
        service="test", amqp_url=AMQP_URL, database_url=database_url, prefix=prefix
    )


Started = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def start_app(
    common: CommonSettings,
) -> AsyncIterator[Callable[[web.Application], Awaitable[TestClient]]]:
    """Serve an app on a real port; every app started is shut down (cleanup_ctx) at the end,
    before the database and topology it used are removed (hence the `common` dependency)."""
    clients: list[TestClient] = []

    async def start(app: web.Application) -> TestClient:
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        await client.close()


@pytest.fixture
def ingest_settings(common: CommonSettings, signing: SigningKeys, tmp_path: Path) -> IngestSettings:
    return IngestSettings(
        common=replace(common, service="ingest"),
        signing=signing,
        spool_dir=tmp_path / "spool",
        confirm_timeout=1.0,
    )


@pytest.fixture
def writer_settings(common: CommonSettings) -> WriterSettings:
    return WriterSettings(common=replace(common, service="writer"), batch_delay=0.005)


@pytest.fixture
def start_ingest(start_app: Any, ingest_settings: IngestSettings) -> Started:
    async def start(
        settings: IngestSettings | None = None, deps: IngestDeps | None = None, **overrides: Any
    ) -> TestClient:
        s = replace(settings or ingest_settings, **overrides)
        client: TestClient = await start_app(create_ingest(s, deps))
        return client

    return start


@pytest.fixture
def start_writer(start_app: Any, writer_settings: WriterSettings) -> Started:
    async def start(
        settings: WriterSettings | None = None, deps: WriterDeps | None = None, **overrides: Any
    ) -> TestClient:
        s = replace(settings or writer_settings, **overrides)
        client: TestClient = await start_app(create_writer(s, deps))
        return client

    return start


@pytest.fixture
async def spawn(common: CommonSettings, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start `python -m services.<name>` on a free port with this test's database and
    prefix, wait until it is ready; killed (its whole process group) at the end if still
    running."""
    procs: list[Proc] = []

    async def start(service: str, **env: str) -> Proc:
        port = free_port()
        full_env = {
            **os.environ,
            "AMQP_URL": common.amqp_url,
            "DATABASE_URL": common.database_url,
            "BELFRY_PREFIX": common.prefix,
            "CLICK_SIGNING_KEYS": "k1:process-test-secret-0123",
            "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
            f"{service.upper()}_PORT": str(port),
            f"{service.upper()}_HOST": "127.0.0.1",
            **env,
        }
        argv = [sys.executable, "-m", f"services.{service}"]
        log = tmp_path / f"{service}-{port}.log"
        p = Proc(await spawn_child(service, argv, env=full_env, log=log), port)
        procs.append(p)
        await wait_http_ok(f"{p.url}/readyz", p.child, timeout=20, interval=0.05)
        return p

    yield start
    # No drain to wait for: the test is over.
    await stop_all([p.child for p in procs], timeout=0)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, for a real ENOSPC (mounting needs root, as the test machine runs);
    skipped where it cannot be mounted."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _upstream(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


async def start_broker_proxy() -> TcpProxy:
    """A TCP proxy in front of the test broker (TEST_AMQP_URL), to cut or freeze it."""
    return await TcpProxy(*_upstream(AMQP_URL, 5672)).start()


async def start_postgres_proxy() -> TcpProxy:
    """A TCP proxy in front of the test Postgres (TEST_PG_URL), to cut or freeze it."""
    return await TcpProxy(*_upstream(PG_ADMIN_URL, 5432)).start()


@pytest.fixture
async def rabbit_proxy() -> AsyncIterator[TcpProxy]:
    proxy = await start_broker_proxy()
    yield proxy
    proxy.thaw()
    await proxy.close()


@pytest.fixture
async def pg_proxy() -> AsyncIterator[TcpProxy]:
    proxy = await start_postgres_proxy()
    yield proxy
    proxy.thaw()
    await proxy.close()
