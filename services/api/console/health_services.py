"""Every service's `/health/detailed`, fetched server-side in parallel, plus the few
figures of its `/metrics` that say how far behind it is (the ingest's spool bytes, the
writer's lag).

Each service gets `ConsoleTargets.timeout_seconds`: one that refuses the connection,
answers something that is not a health document, or does not answer in time shows as
`down` with the reason, and the others are not held up by it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from services.api.console.targets import ConsoleTargets
from shared.bodies import read_limited
from shared.failures import error_text
from shared.probes import health_detailed

# What we read of another service's answer at most: a health document is ~1 kB, the
# /metrics text some tens of kB.
MAX_DOCUMENT = 256 * 1024
MAX_METRICS = 4 * 1024 * 1024
# /metrics gauges shown beside the health document: metric name -> figure name.
FIGURES = {
    "belfry_ingest_spool_bytes": "spool_bytes",
    "belfry_ingest_metrics_spool_bytes": "metrics_spool_bytes",
    "belfry_writer_lag_seconds": "lag_seconds",
}
STATUSES = ("healthy", "degraded", "unhealthy")


class Down(Exception):
    """The service gave no usable health document; the message says why."""


async def _read(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    body = await read_limited(resp.content, limit)
    if body is None:
        raise Down(f"answer larger than {limit} bytes")
    return body


async def _detailed(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/health/detailed", allow_redirects=False) as resp:
        body = await _read(resp, MAX_DOCUMENT)
        if resp.status not in (200, 503):  # 503 is /health/detailed's "unhealthy"
            raise Down(f"/health/detailed answered HTTP {resp.status}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Down("/health/detailed answered something that is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("status") not in STATUSES:
        raise Down("/health/detailed answered something that is not a health document")
    return doc


async def _figures(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """The FIGURES this service exports; {} when /metrics can't be read (the health
    document is what decides up or down)."""
    try:
        async with http.get(base + "/metrics", allow_redirects=False) as resp:
            if resp.status != 200:
                return {}
            text = (await _read(resp, MAX_METRICS)).decode("utf-8", "replace")
        return _read_figures(text)
    except (aiohttp.ClientError, Down):
        return {}


def _read_figures(text: str) -> dict[str, float]:
    """FIGURES from exposition text, line by line: these gauges have no labels, and a line
    of some other metric the parser would refuse must not cost the figures."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in FIGURES:
            try:
                out[FIGURES[name]] = float(rest.split()[0])
            except (IndexError, ValueError):
                continue
    return out


async def fetch_service(
    http: aiohttp.ClientSession, name: str, base: str, timeout: float
) -> dict[str, Any]:
    """One service's entry of the view: its health document, or `down` and why."""
    started = time.perf_counter()
    entry: dict[str, Any] = {"service": name, "url": base}
    try:
        async with asyncio.timeout(timeout):
            doc, figures = await asyncio.gather(_detailed(http, base), _figures(http, base))
    except TimeoutError:
        return {**entry, "status": "down", "reason": f"no answer within {timeout:g} s"}
    except Down as exc:
        return {**entry, "status": "down", "reason": str(exc)}
    except aiohttp.ClientConnectorError as exc:  # the common case: say it plainly
        errno = exc.os_error.errno
        why = os.strerror(errno) if errno else error_text(exc.os_error)
        return {**entry, "status": "down", "reason": f"cannot connect: {why}"}
    except Exception as exc:  # whatever another service does, the view still renders
        return {**entry, "status": "down", "reason": error_text(exc)}
    entry["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return {**entry, "status": doc["status"], "health": doc, "figures": figures}


async def own_health(request: web.Request) -> dict[str, Any]:
    """The api's own `/health/detailed`, by the same handler (no HTTP round trip, so it
    works behind any proxy path)."""
    resp = await health_detailed(request)
    assert isinstance(resp.body, bytes)
    doc = orjson.loads(resp.body)
    return {"service": "api", "url": None, "status": doc["status"], "health": doc, "figures": {}}


async def all_services(request: web.Request, targets: ConsoleTargets) -> list[dict[str, Any]]:
    """The api's entry and every target's, in a fixed order, fetched in parallel."""
    timeout = aiohttp.ClientTimeout(total=targets.timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        others = [
            fetch_service(http, name, url, targets.timeout_seconds)
            for name, url in targets.urls().items()
        ]
        results = await asyncio.gather(own_health(request), *others)
    return list(results)
