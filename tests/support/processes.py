"""Services as real child processes: a free port, the process, waiting until it is ready.
The `spawn` fixture (tests/conftest.py) starts them; every test folder uses it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp

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
