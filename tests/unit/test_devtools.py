"""devtools (the child processes of `make run`, `make bench` and the tests): a child that
becomes ready (by HTTP, TCP or a probe of the caller's), one that dies first (a clear
error with its log), a stop that ends the whole process group, a command run to its end,
and CPU/RSS read for a busy child."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import psutil
import pytest

from devtools.children import run_to_end, spawn, stop_all
from devtools.ports import free_port, tcp_refusal
from devtools.ready import NotReady, Pending, wait_http_ok, wait_ready, wait_tcp
from devtools.usage import (
    PeakRss,
    cpu_seconds,
    cpu_seconds_by_name,
    machine_cpu,
    processes_named,
    rss_bytes,
)

STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(600)"
)
# Leaves a grandchild that ignores SIGTERM, says its pid, then exits on SIGTERM itself.
PARENT_OF_STUBBORN = f"""
import signal, subprocess, sys
grandchild = subprocess.Popen(
    [sys.executable, "-c", {STUBBORN!r}],
    stdout=subprocess.PIPE,
)
grandchild.stdout.readline()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(grandchild.pid, flush=True)
signal.pause()
"""
# Listens on the port in argv[1] after a moment (as a server binding late), then waits.
LATE_LISTENER = """
import socket, sys, time
time.sleep(0.3)
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(600)
"""
# Leaves a grandchild that ignores SIGTERM, writes a report and its pid, exits with 2.
REPORT_AND_EXIT = f"""
import subprocess, sys
grandchild = subprocess.Popen([sys.executable, "-c", {STUBBORN!r}], stdout=subprocess.PIPE)
grandchild.stdout.readline()
print("report: 3 failures", grandchild.pid, flush=True)
sys.exit(2)
"""
# Burns 0.3 s of CPU holding 64 MiB, says so, then waits.
BUSY = """
import time
held = bytearray(64 << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
print("done", flush=True)
time.sleep(600)
"""


async def test_a_child_that_becomes_ready(tmp_path: Path) -> None:
    (tmp_path / "readyz").write_text("ok")
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(tmp_path)]
    child = await spawn("files", argv, log=tmp_path / "files.log")
    try:
        seconds = await wait_http_ok(f"http://127.0.0.1:{port}/readyz", child, timeout=20)
        assert 0 <= seconds < 20
        assert await tcp_refusal("127.0.0.1", port) is None
    finally:
        await child.stop(timeout=10)
    assert child.exit_code is not None and child.exit_seconds is not None
    assert not child.killed  # SIGTERM was enough
    assert await tcp_refusal("127.0.0.1", port) is not None


async def test_a_child_that_dies_before_ready_says_why_with_its_log(tmp_path: Path) -> None:
    code = "print('config error: BELFRY_NOPE is not a number', flush=True); raise SystemExit(3)"
    child = await spawn("broken", [sys.executable, "-c", code], log=tmp_path / "broken.log")
    with pytest.raises(NotReady) as caught:
        await wait_http_ok(f"http://127.0.0.1:{free_port()}/readyz", child, timeout=20)
    message = str(caught.value)
    assert "broken exited (status 3) before it was ready" in message
    assert "config error: BELFRY_NOPE is not a number" in message
    await child.stop()
    assert child.exit_code == 3


async def test_never_ready_says_the_last_answer() -> None:
    with pytest.raises(NotReady) as caught:
        await wait_http_ok(f"http://127.0.0.1:{free_port()}/readyz", timeout=0.3)
    assert "not ready after" in str(caught.value) and caught.value.last


async def test_a_probe_of_ones_own_until_it_gives_its_value(tmp_path: Path) -> None:
    marker = tmp_path / "port"
    answers = iter(["starting", "still starting"])

    async def port_file() -> str:
        if not marker.exists():
            raise Pending(next(answers, "no file"))
        return marker.read_text()

    async def write_later() -> None:
        await asyncio.sleep(0.3)
        marker.write_text("9222")

    writer = asyncio.create_task(write_later())
    assert await wait_ready(port_file, where=str(marker), timeout=20, interval=0.01) == "9222"
    await writer
    marker.unlink()
    with pytest.raises(NotReady) as caught:
        await wait_ready(port_file, where="the port file", timeout=0.2, interval=0.01)
    assert "the port file not ready after 0 s (the port file): no file" in str(caught.value)
    assert caught.value.last == "no file"


async def test_a_probe_stops_when_its_child_dies(tmp_path: Path) -> None:
    code = "print('bad flag --nope', flush=True); raise SystemExit(1)"
    child = await spawn("browser", [sys.executable, "-c", code], log=tmp_path / "b.log")

    async def never() -> None:
        raise Pending("no port file yet")

    with pytest.raises(NotReady) as caught:
        await wait_ready(never, child, where="the port file", timeout=20)
    assert "browser exited (status 1) before it was ready" in str(caught.value)
    assert "bad flag --nope" in str(caught.value)
    await child.stop()


async def test_a_child_listening_late_on_tcp(tmp_path: Path) -> None:
    port = free_port()
    child = await spawn("late", [sys.executable, "-c", LATE_LISTENER, str(port)])
    try:
        seconds = await wait_tcp("127.0.0.1", port, child, timeout=20, interval=0.01)
        assert 0.2 < seconds < 20
        assert await tcp_refusal("127.0.0.1", port) is None
    finally:
        await child.stop(timeout=10)
    with pytest.raises(NotReady) as caught:
        await wait_tcp("127.0.0.1", port, timeout=0.2)
    assert f"(127.0.0.1:{port})" in str(caught.value) and caught.value.last


async def test_a_command_run_to_its_end(tmp_path: Path) -> None:
    log = tmp_path / "report.log"
    child = await spawn("report", [sys.executable, "-c", REPORT_AND_EXIT], log=log)
    assert await child.wait(timeout=20) == 2
    assert child.exit_code == 2 and not child.killed
    report, pid = log.read_text().rsplit(" ", 1)
    assert report == "report: 3 failures"
    # What it left behind is gone with its group.
    with contextlib.suppress(psutil.NoSuchProcess):
        await asyncio.to_thread(psutil.Process(int(pid)).wait, 10)
    assert not psutil.pid_exists(int(pid))
    await child.stop()  # idempotent
    assert child.exit_code == 2


async def test_stdout_apart_from_stderr(tmp_path: Path) -> None:
    log, out = tmp_path / "err.log", tmp_path / "out.txt"
    script = "import sys; print('<html>'); print('warning', file=sys.stderr); sys.exit(3)"
    child = await spawn("dump", [sys.executable, "-c", script], log=log, stdout=out)
    assert await child.wait(timeout=20) == 3
    assert out.read_text() == "<html>\n" and log.read_text() == "warning\n"
    with pytest.raises(ValueError, match="needs a log"):
        await spawn("dump", [sys.executable, "-c", script], stdout=out)


async def test_run_to_end_gives_the_ended_child_or_kills_it_at_the_timeout(tmp_path: Path) -> None:
    log = tmp_path / "report.log"
    done = await run_to_end("report", [sys.executable, "-c", REPORT_AND_EXIT], log=log, timeout=20)
    assert done.exit_code == 2 and not done.killed and done.tail().startswith("report:")
    stuck = await run_to_end("stubborn", [sys.executable, "-c", STUBBORN], timeout=0.5)
    assert stuck.killed and stuck.exit_code == -9 and stuck.returncode == -9


async def test_a_command_still_running_after_the_timeout_is_left_running() -> None:
    child = await spawn("stubborn", [sys.executable, "-c", STUBBORN])
    assert child.proc.stdout is not None
    await child.proc.stdout.readline()  # its handler is in place
    assert await child.wait(timeout=0.2) is None
    assert child.returncode is None and psutil.Process(child.pid).is_running()
    await child.stop(timeout=0)
    assert child.killed and child.exit_code == -9


async def test_stop_ends_the_whole_group(tmp_path: Path) -> None:
    child = await spawn("parent", [sys.executable, "-c", PARENT_OF_STUBBORN])
    assert child.proc.stdout is not None
    grandchild = psutil.Process(int(await child.proc.stdout.readline()))
    assert grandchild.is_running() and os.getpgid(grandchild.pid) == child.pid
    await child.stop(timeout=10)
    # The parent left on SIGTERM (at once, though the grandchild held our pipe)...
    assert child.exit_code == 0 and not child.killed
    assert child.exit_seconds is not None and child.exit_seconds < 5
    # ...and what it left behind is gone with the group.
    await asyncio.to_thread(grandchild.wait, 10)
    assert not grandchild.is_running()


async def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    child = await spawn("stubborn", [sys.executable, "-c", STUBBORN])
    assert child.proc.stdout is not None
    await child.proc.stdout.readline()  # its handler is in place
    killed: list[str] = []
    await stop_all([child], timeout=0.2, on_kill=lambda c: killed.append(c.name))
    assert child.killed and killed == ["stubborn"] and child.exit_code == -9
    await stop_all([child])  # idempotent


# A process under a name of its own that runs a busy child to its end (and so reaps it).
REAPER = """
import ctypes, subprocess, sys, time
ctypes.CDLL(None).prctl(15, b"belfry-reaper", 0, 0, 0)  # PR_SET_NAME: its command name
subprocess.run([sys.executable, "-c", "import time\\nt = time.process_time()\\n"
                "while time.process_time() - t < 0.3: pass"], check=True)
print("done", flush=True)
time.sleep(600)
"""


async def test_cpu_and_rss_of_a_busy_child() -> None:
    child = await spawn("busy", [sys.executable, "-c", BUSY])
    try:
        assert child.proc.stdout is not None
        peak = PeakRss(child.pid, interval=0.01).start()
        assert await child.proc.stdout.readline() == b"done\n"
        cpu = cpu_seconds(child.pid)
        assert cpu is not None and cpu >= 0.3
        rss = rss_bytes(child.pid)
        assert rss is not None and rss >= 64 << 20
        assert await peak.stop() >= 64 << 20
        assert peak.peak_kb == peak.peak_bytes // 1024
    finally:
        await child.stop(timeout=10)
    assert cpu_seconds(child.pid) is None and rss_bytes(child.pid) is None  # gone


def test_machine_and_named_processes() -> None:
    busy, total = machine_cpu()
    assert 0 < busy < total
    me = psutil.Process().name()
    assert str(os.getpid()) in " ".join(processes_named(me))
    assert all(not p.startswith(f"{os.getpid()} ") for p in processes_named(me, os.getpid()))
    assert cpu_seconds_by_name([me, "no-such-command"])[me] > 0
    assert cpu_seconds_by_name(["no-such-command"]) == {"no-such-command": 0.0}


async def test_the_cpu_of_reaped_children_counts_when_asked() -> None:
    # Postgres's backends of closed connections are such children of the postmaster.
    child = await spawn("reaper", [sys.executable, "-c", REAPER])
    try:
        assert child.proc.stdout is not None
        assert await child.proc.stdout.readline() == b"done\n"
        assert cpu_seconds_by_name(["belfry-reaper"])["belfry-reaper"] < 0.2
        assert cpu_seconds_by_name(["belfry-reaper"], reaped=True)["belfry-reaper"] >= 0.3
    finally:
        await child.stop(timeout=10)
