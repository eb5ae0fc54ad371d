"""Services as real child processes (devtools: spawn, readiness, stop): the `spawn`
fixture (tests/conftest.py) starts them; every test folder uses it. ROOT and free_port
are here for the tests that import them from this module."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devtools import ROOT
from devtools.children import Child
from devtools.ports import free_port

__all__ = ["ROOT", "Proc", "free_port"]


class Proc:
    """A started service: its process (`proc`), port, log file and base URL."""

    def __init__(self, child: Child, port: int) -> None:
        self.child, self.port = child, port

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self.child.proc

    @property
    def log(self) -> Path:
        assert self.child.log is not None
        return self.child.log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
