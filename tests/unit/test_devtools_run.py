"""`make run`'s supervisor (devtools/run/supervisor.py) with stand-in children, no
servers: a service that exits before it is ready is said to have exited (and its output
is copied, labelled), a second Ctrl-C kills a service that ignores SIGTERM, and a port
in use stops `make run` before anything starts."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from devtools.children import spawn
from devtools.ports import free_port
from devtools.run.config import SERVICES, Config
from devtools.run.fatal import Fatal
from devtools.run.supervisor import Running, check_ports, stop_services, watch

KEYS = {
    "CLICK_SIGNING_KEYS": "k1:make-run-test-secret-0123",
    "INGEST_TOKEN_KEYS": "t1:make-run-token-secret-0123",
}
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(600)"
)


def config_on_free_ports() -> Config:
    ports = {f"{s.name.upper()}_PORT": str(free_port()) for s in SERVICES}
    return Config.from_env({**KEYS, **ports})


async def test_a_service_that_exits_before_ready_is_said_to_have_exited(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_on_free_ports()
    endpoint = config.endpoints[0]
    code = "import sys; print('bad setting: INGEST_NOPE', flush=True); sys.exit(3)"
    child = await spawn(endpoint.service.name, [sys.executable, "-c", code])
    running = Running(endpoint, child, b"ingest | ")
    assert await watch(config, [running], asyncio.Event()) == 1
    assert not await stop_services([running], asyncio.Event())  # status 3: not clean
    out = capsys.readouterr().out
    assert "make run: ingest exited on its own (status 3); stopping" in out
    assert "ingest | bad setting: INGEST_NOPE\n" in out
    assert "not ready" not in out


async def test_a_second_ctrl_c_kills_a_service_that_ignores_sigterm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = config_on_free_ports().endpoints[0]
    child = await spawn(endpoint.service.name, [sys.executable, "-c", IGNORES_SIGTERM])
    assert child.proc.stdout is not None
    assert await child.proc.stdout.readline() == b"up\n"  # it ignores SIGTERM from here
    running = Running(endpoint, child, b"ingest | ")
    stop = asyncio.Event()
    stopping = asyncio.create_task(stop_services([running], stop))
    await asyncio.sleep(0)  # it sent SIGTERM and waits (30 s, or until Ctrl-C again)
    stop.set()
    assert await asyncio.wait_for(stopping, 10) is False
    assert child.killed and child.returncode == -9
    out = capsys.readouterr().out
    assert "make run: ingest did not stop: killing it" in out
    assert "make run: stopped: ingest (killed by SIGKILL)" in out


async def test_a_port_in_use_stops_make_run_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = Config.from_env({**KEYS, "WRITER_PORT": str(port)})
        with pytest.raises(Fatal, match=f"port {port} \\(WRITER_PORT\\) is in use"):
            await check_ports(config)
