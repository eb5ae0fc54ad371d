"""Fixtures of the integration tests: services run as real child processes."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.settings import CommonSettings
from tests.support.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def spawn(common: CommonSettings, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    procs: list[Proc] = []

    async def start(service: str, **env: str) -> Proc:
        port = free_port()
        log = tmp_path / f"{service}-{port}.log"
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
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"services.{service}",
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        p = Proc(proc, port, log)
        procs.append(p)
        await wait_ready(p)
        return p

    yield start
    for p in procs:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()


async def wait_ready(p: Proc, timeout: float = 20) -> None:
    async with aiohttp.ClientSession() as http:

        async def status() -> int:
            if p.proc.returncode is not None:
                raise AssertionError(f"process exited: {p.log.read_text()[-2000:]}")
            try:
                async with http.get(p.url + "/readyz") as resp:
                    return resp.status
            except aiohttp.ClientError:
                return 0

        await eventually(status, lambda s: s == 200, timeout=timeout, what="/readyz 200")
