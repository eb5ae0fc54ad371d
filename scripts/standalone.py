"""Serving one of the benchmark's stand-in apps (bare_pixel, naive_pixel, bare_intake,
otlp_sink) until SIGTERM or SIGINT: plain aiohttp on the caller's loop, no access log, a
deep backlog, and nothing of the services' own server (no limits, no drain), so the
stand-ins measure only what they do. Imported by those scripts, which run as files (this
folder is then on sys.path)."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


async def serve_until_signal(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
