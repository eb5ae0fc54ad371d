"""The probe endpoints every service serves: /livez, /readyz, /health, /health/detailed,
/metrics.

`/livez` checks only that the process answers, so Kubernetes never restarts a pod
because a dependency is down. `/readyz` runs every registered check and answers 503
with the reasons; it also turns 503 the moment SIGTERM starts the drain.

`/health` keeps Little Bell's shape for Docker `HEALTHCHECK curl -f /health`: 200
"healthy" when every hard (non-soft) check passes, else 503 "unhealthy" naming the
failing dependencies but not their reasons (it is public through the proxy; the reasons
are on `/readyz` and `/health/detailed`, which are not).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.prom import PROMETHEUS, app_registry

Check = Callable[[], Awaitable[str | None]]


@dataclass
class Health:
    service: str
    version: str
    started: float = field(default_factory=time.monotonic)
    draining: bool = False
    # name -> check; a check returns None when healthy, else the reason.
    checks: dict[str, Check] = field(default_factory=dict)
    # Checks whose failure makes the service degraded rather than unready.
    soft: set[str] = field(default_factory=set)

    # The run of the checks in progress, shared by /health callers (see run_checks_shared).
    _running: asyncio.Future[dict[str, tuple[str | None, float]]] | None = field(
        default=None, init=False, repr=False
    )

    def add_check(self, name: str, check: Check, *, soft: bool = False) -> None:
        self.checks[name] = check
        if soft:
            self.soft.add(name)

    async def run_checks(self) -> dict[str, tuple[str | None, float]]:
        async def timed(check: Check) -> tuple[str | None, float]:
            start = time.perf_counter()
            try:
                reason = await asyncio.wait_for(check(), 5)
            except Exception as exc:
                reason = f"check failed: {type(exc).__name__}: {exc}"
            return reason, (time.perf_counter() - start) * 1000

        names = list(self.checks)
        results = await asyncio.gather(*(timed(self.checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def run_checks_shared(self) -> dict[str, tuple[str | None, float]]:
        """`run_checks`, joined by every caller that arrives while a run is in progress:
        however many requests flood a public probe, one set of checks runs at a time."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self.run_checks())
        return await asyncio.shield(self._running)

    def hard_failures(self, results: dict[str, tuple[str | None, float]]) -> dict[str, str]:
        """name -> reason of the failing checks that make the service unable to work."""
        return {n: r for n, (r, _) in results.items() if r is not None and n not in self.soft}


HEALTH = web.AppKey("health", Health)


def _json(data: object, status: int = 200) -> web.Response:
    import orjson

    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def livez(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    if health.draining:
        return _json({"status": "not ready", "reasons": {"process": "shutting down"}}, 503)
    reasons = health.hard_failures(await health.run_checks())
    if reasons:
        return _json({"status": "not ready", "reasons": reasons}, 503)
    return _json({"status": "ready"})


async def health_route(request: web.Request) -> web.Response:
    """Little Bell's shape: {"status":"healthy","service","version","timestamp"}; 503
    with "status":"unhealthy" and "unhealthy": [dependency, …] when a hard check fails
    ("process" while shutting down)."""
    health = request.app[HEALTH]
    failing = sorted(health.hard_failures(await health.run_checks_shared()))
    if health.draining:
        failing.insert(0, "process")
    body: dict[str, object] = {
        "status": "unhealthy" if failing else "healthy",
        "service": health.service,
        "version": health.version,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    if failing:
        body["unhealthy"] = failing
    return _json(body, 503 if failing else 200)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def health_detailed(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    results = await health.run_checks()
    deps = {
        name: {
            "status": "healthy" if reason is None else "unhealthy",
            "latency_ms": round(ms, 2),
            **({"reason": reason} if reason else {}),
        }
        for name, (reason, ms) in results.items()
    }
    hard_fail = any(r for n, (r, _) in results.items() if r and n not in health.soft)
    soft_fail = any(r for n, (r, _) in results.items() if r and n in health.soft)
    status = "unhealthy" if hard_fail or health.draining else "degraded" if soft_fail else "healthy"
    return _json(
        {
            "status": status,
            "service": health.service,
            "version": health.version,
            "uptime_seconds": round(time.monotonic() - health.started, 1),
            "memory": {"rss_bytes": _rss_bytes()},
            "dependencies": deps,
            "timestamp": datetime.now(UTC).isoformat(),
        },
        503 if status == "unhealthy" else 200,
    )


async def metrics(request: web.Request) -> web.Response:
    """This app's registry (shared.prom)."""
    body = generate_latest(request.app[PROMETHEUS])
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


PROBE_PATHS = frozenset({"/livez", "/readyz", "/health", "/health/detailed", "/metrics"})


def add_probe_routes(app: web.Application, health: Health) -> None:
    app[HEALTH] = health
    app_registry(app)  # what /metrics serves (made by add_observability, or here)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health_route)
    app.router.add_get("/health/detailed", health_detailed)
    app.router.add_get("/metrics", metrics)
