"""Child processes: started in a session (process group) of their own, output to a log
file or a pipe, stopped gracefully (SIGTERM, then SIGKILL to the whole group).

A session of their own: a Ctrl-C on the terminal reaches only the parent, which stops
every child the same way, and SIGKILL to the group also ends grandchildren (ingest's
workers). Each child also gets SIGTERM if the parent dies, even by kill -9
(`die_with_parent_hook`), so none is left holding a port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devtools import ROOT
from shared.serve import die_with_parent_hook

STOP_TIMEOUT = 35.0  # SIGTERM → SIGKILL; the services drain well inside 30 s (README)
LINE_LIMIT = 1 << 20  # longest output line a pipe reader gets in one piece


@dataclass(eq=False)
class Child:
    """One started process. `proc` is the asyncio process; after `stop()`, `exit_code`,
    `exit_seconds` (SIGTERM to exit) and `killed` say how it ended."""

    name: str
    proc: asyncio.subprocess.Process
    log: Path | None = None
    exit_code: int | None = None
    exit_seconds: float | None = None
    killed: bool = False
    _log_fh: IO[bytes] | None = field(default=None, repr=False)
    _out_fh: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def status(self) -> str:
        """How it exited, for people: `status 1`, `killed by SIGKILL`, `running`."""
        return exit_status(self.proc.returncode)

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log file ('' without one)."""
        if self.log is None:
            return ""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        """SIGTERM to the process itself: a service forwards it to its own workers."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL to its whole process group: the process and anything it started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL the group. Idempotent."""
        await stop_all([self], timeout)
        return self.exit_code

    async def wait(self, timeout: float | None = None) -> int | None:
        """Until it exits by itself, up to `timeout` (a command run to its end): then its
        exit code, what it left in its group killed, as after stop(). None if it is still
        running after `timeout`; it is left running (stop() it)."""
        try:
            await asyncio.wait_for(leader_exit(self.proc), timeout)
        except TimeoutError:
            return None
        # Not stop(): a signal sent now would race asyncio to reap it (Popen polls first).
        await self._collect()
        return self.exit_code

    async def _collect(self) -> None:
        """Once it has exited: kill what it left behind (it would hold our pipe open, and
        its port), reap it, close its log."""
        self.kill_group()
        await self.proc.wait()
        self.exit_code = self.proc.returncode
        for fh in (self._log_fh, self._out_fh):
            if fh is not None:
                fh.close()


def exit_status(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"


async def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    stdout: Path | None = None,
    cwd: Path = ROOT,
) -> Child:
    """Start `argv` with its output (stdout and stderr) written to `log`, or, without a
    log, to a pipe the caller reads (`child.proc.stdout`). With `stdout` too, its stdout
    goes to that file alone and `log` gets stderr (a command whose stdout is its result,
    e.g. `chromium --dump-dom`)."""
    if stdout is not None and log is None:
        raise ValueError("stdout apart needs a log for stderr")
    fh = log.open("wb") if log is not None else None
    out = stdout.open("wb") if stdout is not None else None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out or fh or subprocess.PIPE,
            stderr=fh if out is not None else subprocess.STDOUT,
            limit=LINE_LIMIT,
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),
        )
    except BaseException:
        for opened in (fh, out):
            if opened is not None:
                opened.close()
        raise
    return Child(name, proc, log, _log_fh=fh, _out_fh=out)


async def run_to_end(
    name: str,
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    stdout: Path | None = None,
    cwd: Path = ROOT,
) -> Child:
    """A command run to its end (`spawn`'s arguments): the ended child, its `exit_code`
    set and what it left in its group killed. Still running after `timeout`: killed with
    its group (`killed`, `exit_code` -9), so nothing outlives the caller."""
    child = await spawn(name, argv, env=env, log=log, stdout=stdout, cwd=cwd)
    try:
        await child.wait(timeout)
    finally:
        await child.stop(timeout=0)  # only if still running (or the wait was cancelled)
    return child


async def stop_all(
    children: Sequence[Child],
    timeout: float = STOP_TIMEOUT,
    interrupt: asyncio.Event | None = None,
    on_kill: Callable[[Child], Any] | None = None,
) -> None:
    """SIGTERM every child still running, wait until all exited, up to `timeout` or until
    `interrupt` is set (a second Ctrl-C), then SIGKILL the groups of those left
    (`on_kill` is told first). What a child started and left behind is killed too."""
    todo = [c for c in children if c.exit_code is None]
    if not todo:
        return
    started = time.monotonic()
    for child in todo:
        child.terminate()
    everyone = asyncio.gather(*(_reap(c, started) for c in todo))
    again = asyncio.ensure_future((interrupt or asyncio.Event()).wait())
    either: list[asyncio.Future[Any]] = [everyone, again]
    try:
        await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        again.cancel()
    for child in todo:
        if child.exit_seconds is None:
            child.killed = True
            if on_kill is not None:
                on_kill(child)
            child.kill_group()
    await everyone


async def _reap(child: Child, started: float) -> None:
    await leader_exit(child.proc)
    child.exit_seconds = round(time.monotonic() - started, 3)
    await child._collect()


async def leader_exit(proc: asyncio.subprocess.Process) -> None:
    """Until the process itself has exited. (`proc.wait()` also waits until its output
    pipe is closed, which a grandchild that inherited it can put off forever.) A pidfd
    turns readable when the process exits."""
    if proc.returncode is not None:
        return
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or reaped already
        await proc.wait()
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
