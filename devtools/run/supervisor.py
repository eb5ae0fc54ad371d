"""`make run`'s services as child processes: started in order, their output copied to
ours line by line behind a `<name> | ` label, watched until Ctrl-C/SIGTERM or until one
exits on its own, then all stopped (SIGTERM; SIGKILL after STOP_TIMEOUT or a second
Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

from devtools.children import Child, exit_status, spawn, stop_all
from devtools.ports import tcp_refusal
from devtools.ready import NotReady, wait_http_ok
from devtools.run.banner import banner
from devtools.run.config import READY_TIMEOUT, SERVICES, STOP_TIMEOUT, Config, Endpoint
from devtools.run.fatal import Fatal, say

COLORS = ("36", "33", "35", "32", "34", "31")  # cyan, yellow, magenta, green, blue, red


class Running:
    """One started service, and the task that copies its output, labelled, to ours."""

    def __init__(self, endpoint: Endpoint, child: Child, label: bytes) -> None:
        self.endpoint, self.child = endpoint, child
        self.name = endpoint.service.name
        assert child.proc.stdout is not None
        self.pump = asyncio.create_task(
            copy_lines(child.proc.stdout, label), name=f"pump-{self.name}"
        )
        self.exited = asyncio.create_task(child.proc.wait(), name=f"wait-{self.name}")

    @classmethod
    async def start(cls, endpoint: Endpoint, env: dict[str, str], label: bytes) -> Running:
        argv = [sys.executable, "-m", endpoint.service.module]
        return cls(endpoint, await spawn(endpoint.service.name, argv, env=env), label)


async def copy_lines(stream: asyncio.StreamReader, label: bytes) -> None:
    """Every line of `stream` to our stdout behind `label`, until EOF."""
    out = sys.stdout.buffer
    while True:
        try:
            line = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # EOF; a last line without newline
            line = exc.partial
        except asyncio.LimitOverrunError as exc:  # an overlong line: pass it on in pieces
            line = await stream.read(exc.consumed)
        if not line:
            return
        with contextlib.suppress(BrokenPipeError):  # keep draining: a full pipe blocks it
            out.write(label + line + (b"" if line.endswith(b"\n") else b"\n"))
            out.flush()


def labels(color: bool) -> dict[str, bytes]:
    width = max(len(s.name) for s in SERVICES)
    out = {}
    for index, svc in enumerate(SERVICES):
        text = svc.name.ljust(width)
        if color:
            text = f"\x1b[{COLORS[index % len(COLORS)]}m{text}\x1b[0m"
        out[svc.name] = f"{text} | ".encode()
    return out


async def wait_ready(services: list[Running]) -> str | None:
    """None once every /readyz answered 200, else why not (after READY_TIMEOUT)."""
    results = await asyncio.gather(
        *(
            wait_http_ok(
                f"{s.endpoint.base_url}/readyz", s.child, timeout=READY_TIMEOUT, interval=0.25
            )
            for s in services
        ),
        return_exceptions=True,
    )
    failing = []
    for svc, result in zip(services, results, strict=True):
        if isinstance(result, NotReady):
            failing.append(f"{svc.name}: {result.last}")
        elif isinstance(result, BaseException):
            raise result
    if failing:
        return f"not ready after {READY_TIMEOUT:.0f} s: " + "; ".join(failing)
    return None


async def supervise(config: Config) -> int:
    """Start the services, watch them, stop them all; the exit status of `make run`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    env = config.service_env(os.environ)
    label = labels(color=sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    services: list[Running] = []
    code = 1
    try:
        for e in config.endpoints:
            services.append(await Running.start(e, env, label[e.service.name]))
        say(
            "started "
            + ", ".join(f"{s.name} (pid {s.child.pid}, :{s.endpoint.port})" for s in services)
        )
        code = await watch(config, services, stop)
    finally:
        clean = await stop_services(services, stop)
    return code if clean else 1


async def watch(config: Config, services: list[Running], stop: asyncio.Event) -> int:
    """Until Ctrl-C/SIGTERM (0), a service exiting on its own or never getting ready (1)."""
    started = time.monotonic()
    stopping = asyncio.create_task(stop.wait())
    died = asyncio.create_task(first_exit(services))
    ready = asyncio.create_task(wait_ready(services))
    try:
        await asyncio.wait({stopping, died, ready}, return_when=asyncio.FIRST_COMPLETED)
        # A service that exited is said as such, also when /readyz noticed it first.
        if ready.done() and not stopping.done() and exited(services) is None:
            problem = ready.result()
            if problem:
                say(problem)
                return 1
            say(f"all services ready in {time.monotonic() - started:.1f} s")
            print(banner(config), flush=True)
            await asyncio.wait({stopping, died}, return_when=asyncio.FIRST_COMPLETED)
        gone = died.result() if died.done() else exited(services)
        if gone is not None:
            say(f"{gone.name} exited on its own ({gone.child.status()}); stopping")
            return 1
        say("stopping (SIGTERM to every service; Ctrl-C again kills them)")
        return 0
    finally:
        for task in (stopping, died, ready):
            task.cancel()


async def check_ports(config: Config) -> None:
    """Fatal when a service's port already answers: it would fail to bind, less clearly."""
    for e in config.endpoints:
        if await tcp_refusal(e.host, e.port) is None:
            env = e.service.port_env
            raise Fatal(f"port {e.port} ({env}) is in use: stop what listens there, or set {env}")


def exited(services: list[Running]) -> Running | None:
    return next((s for s in services if s.child.returncode is not None), None)


async def first_exit(services: list[Running]) -> Running:
    done, _ = await asyncio.wait([s.exited for s in services], return_when=asyncio.FIRST_COMPLETED)
    return next(s for s in services if s.exited in done)


async def stop_services(services: list[Running], stop: asyncio.Event) -> bool:
    """Stop every service (devtools.children.stop_all; a second Ctrl-C kills at once).
    Returns after their last output line was copied: True when every service stopped
    cleanly (status 0, or SIGTERM before it installed its handler)."""
    if not services:
        return True
    stop.clear()
    children = [s.child for s in services]
    await stop_all(
        children, STOP_TIMEOUT, stop, on_kill=lambda c: say(f"{c.name} did not stop: killing it")
    )
    await asyncio.wait([s.pump for s in services], timeout=5)
    say("stopped: " + ", ".join(f"{c.name} ({exit_status(c.returncode)})" for c in children))
    return all(c.returncode in (0, -signal.SIGTERM) for c in children)
