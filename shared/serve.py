"""Running an aiohttp app as a service process: uvloop, SIGTERM drain, SO_REUSEPORT, and
the server's own limits (head deadline, connection cap: shared.httpserver).

On SIGTERM/SIGINT: `/readyz` turns 503 at once, we wait `shutdown_grace` seconds so
load balancers notice, then the listener closes, in-flight requests finish, and the
app's cleanup contexts run (publishers flush and wait for confirms, consumers ack).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import sys
from collections.abc import Callable

import uvloop
from aiohttp import web

from shared.httpserver import HttpLimits, start_server
from shared.probes import HEALTH

log = logging.getLogger("belfry.serve")


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_grace: float = 0.0,
    reuse_port: bool = False,
    shutdown_timeout: float = 20.0,
    limits: HttpLimits | None = None,
) -> None:
    limits = limits or HttpLimits()
    server = await start_server(
        app, host, port, limits, reuse_port=reuse_port, shutdown_timeout=shutdown_timeout
    )
    log.info(
        "listening",
        extra={
            "host": host,
            "port": port,
            "max_connections": limits.max_connections,
            "header_timeout_s": limits.header_timeout,
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: not ready, draining")
    if HEALTH in app:
        app[HEALTH].draining = True
    if shutdown_grace:
        await asyncio.sleep(shutdown_grace)
    await server.close()
    log.info("stopped")


def run(coro_factory: object) -> None:
    """Run the service's main coroutine on uvloop."""
    uvloop.run(coro_factory)  # type: ignore[arg-type]


def die_with_parent_hook() -> Callable[[], None] | None:
    """A `preexec_fn` for child processes: on Linux the child gets SIGTERM when its parent
    dies, even by kill -9, so no orphaned worker keeps holding a port."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: nothing to import after

    def hook() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook
