"""HTTP observability for every service: one middleware for Prometheus metrics, the
server span, and the figures the service reports about itself.

Route templates (`/{tenant}/pixel/{email_id}.gif`), never raw paths, label the metrics
and name the spans, so cardinality stays bounded. Probes and `/metrics` are neither
traced nor counted: Kubernetes polls them all day and they would drown the real traffic.

Every error is JSON: aiohttp's own (404, 405, 413), a body aiohttp cannot decode (400),
a bug (500). A client that hangs up mid-request is counted as 499, not as a 500.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.probes import PROBE_PATHS
from shared.prom import app_registry
from shared.telemetry import RootSampling

access_log = logging.getLogger("belfry.access")
log = logging.getLogger("belfry.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


class HttpMetrics:
    """The HTTP metrics of one app, on its registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            ["service", "method", "route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )


class HttpStats:
    """Counts and durations since the last `take()`: the self-reported request rate,
    error rate and p95 latency."""

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.durations: list[float] = []
        self.started = time.monotonic()

    def observe(self, status: int, seconds: float) -> None:
        self.count += 1
        if status >= 500:
            self.errors += 1
        if len(self.durations) < 100_000:  # bounded memory between two reports
            self.durations.append(seconds)

    def take(self) -> tuple[float, float, float, int]:
        """(requests/s, error ratio, p95 seconds, count) since the previous take."""
        now = time.monotonic()
        elapsed = max(now - self.started, 1e-6)
        count, errors, durations = self.count, self.errors, sorted(self.durations)
        self.count, self.errors, self.durations, self.started = 0, 0, [], now
        p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))] if durations else 0.0
        return count / elapsed, (errors / count if count else 0.0), p95, count


def _route(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _json_error(exc: web.HTTPException) -> web.Response | None:
    """aiohttp's own errors (no route: 404, wrong method: 405, body too large: 413, ...)
    come as text; every Belfry client gets JSON. None: leave `exc` as it is (not an error,
    or already JSON)."""
    if exc.status < 400 or exc.content_type == "application/json":
        return None
    response = web.Response(
        body=orjson.dumps({"error": (exc.reason or "error").lower()}),
        status=exc.status,
        content_type="application/json",
    )
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _internal_error() -> web.Response:
    return web.Response(
        body=b'{"error":"internal error"}', status=500, content_type="application/json"
    )


# What nginx logs when the client closed the connection before the answer: no response
# goes out, but the request is counted, apart from the server's own errors.
CLIENT_CLOSED = 499


def _failure(request: web.Request, exc: Exception, route: str) -> web.Response:
    """The answer to an exception that is not an HTTPException (called inside `except`).

    A body aiohttp could not read (corrupt gzip/deflate, broken chunking) is the client's
    fault: 400. A client that went away mid-request is no server error: 499, one INFO line.
    Anything else is a bug: logged with its trace, answered 500."""
    if isinstance(exc, web.RequestPayloadError):
        reason = (
            "body does not match its Content-Encoding"
            if isinstance(exc.__cause__, ContentEncodingError)
            else "malformed request body"
        )
        response = web.Response(
            body=orjson.dumps({"error": reason}), status=400, content_type="application/json"
        )
        _close_if_unreadable(request, response)
        return response
    if isinstance(exc, ConnectionError) and request.transport is None:
        _client_gone(request, route)
        return web.Response(status=CLIENT_CLOSED)
    log.exception("unhandled error", extra={"route": route})
    return _internal_error()


def _close_if_unreadable(request: web.Request, response: web.StreamResponse) -> None:
    """After a body aiohttp could not decode, whoever answered it (a handler may catch
    RequestPayloadError itself), the stream cannot be parsed further and aiohttp drops
    the connection: say `Connection: close`, so no client sends its next request there."""
    if isinstance(request.content.exception(), web.RequestPayloadError):
        response.force_close()


def _cancelled(request: web.Request, route: str) -> int:
    """The status to count for a cancelled handler: 499 when the client hung up (servers
    with `handler_cancellation`, as aiohttp's test server, cancel the handler then)."""
    if request.transport is None:
        _client_gone(request, route)
        return CLIENT_CLOSED
    return 500


def _client_gone(request: web.Request, route: str) -> None:
    log.info("client disconnected", extra={"route": route, "method": request.method})


async def _drop_server_banner(request: web.Request, response: web.StreamResponse) -> None:
    """No `Server: Python/3.x aiohttp/3.y` on any answer: it tells scanners what to try."""
    response.headers.popall(hdrs.SERVER, None)


class _Outcome:
    """The status a request ends with, as the handler's wrapper learns it (read in the
    middleware's `finally`, also when the wrapper raises)."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 500


async def _answer(
    request: web.Request,
    handler: Handler,
    route: str,
    outcome: _Outcome,
    span: trace.Span | None = None,
) -> web.StreamResponse:
    """The handler's answer, with every error as JSON (see the module docstring)."""
    try:
        response = await handler(request)
        outcome.status = response.status
        if outcome.status >= 400:
            _close_if_unreadable(request, response)
        return response
    except web.HTTPException as exc:
        outcome.status = exc.status
        answer = _json_error(exc)
        _close_if_unreadable(request, answer or exc)
        if answer is None:
            raise
        return answer
    except asyncio.CancelledError:
        outcome.status = _cancelled(request, route)
        raise
    except Exception as exc:
        if span is not None:
            span.record_exception(exc)
        failure = _failure(request, exc, route)
        outcome.status = failure.status
        return failure


def _server_span(
    tracer: trace.Tracer, roots: RootSampling | None, request: web.Request, route: str
) -> trace.Span | None:
    """The request's server span: a child of the caller's traceparent, else a root (whose
    sampling `roots` decides without building a span when it says no)."""
    name = f"{request.method} {route}"
    if "traceparent" in request.headers:
        parent = propagate.extract(request.headers)
        return tracer.start_span(name, parent, SpanKind.SERVER)
    if roots is not None:  # mail clients send none: the hot path
        return roots.start_root_span(name, SpanKind.SERVER)
    return tracer.start_span(name, None, SpanKind.SERVER)


class RequestRecorder:
    """Counts an answered request: the Prometheus counter and histogram, the
    self-reported HttpStats and the sampled access log. The middleware records every
    request through it, and so does a route served below aiohttp's web stack (ingest's
    pixel fast path), so both count alike."""

    def __init__(
        self,
        service: str,
        stats: HttpStats,
        metrics: HttpMetrics,
        access_log_sample: float = 0.0,
    ) -> None:
        self._service = service
        self._stats = stats
        self._metrics = metrics
        self._access_log_sample = access_log_sample
        # The label children of this app's metrics, bound once per (method, route, status).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(
        self, method: str, route: str, status: int, elapsed: float, ids: Mapping[str, str]
    ) -> None:
        """`ids`: the request's tenant and email id, for the access log."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._metrics.requests.labels(self._service, method, route, str(status)),
                self._metrics.duration.labels(self._service, method, route),
            )
        children[0].inc()
        children[1].observe(elapsed)
        self._stats.observe(status, elapsed)
        if self._access_log_sample and random.random() < self._access_log_sample:
            _access_log(method, route, status, elapsed, ids)
        elif access_log.isEnabledFor(logging.DEBUG):
            _access_log(method, route, status, elapsed, ids, logging.DEBUG)


def observability_middleware(
    tracer: trace.Tracer | None,
    recorder: RequestRecorder,
    truncate_ips: bool = False,
) -> Middleware:
    roots = RootSampling.of(tracer)  # decides unsampled roots without building a span

    def observe(request: web.Request, route: str, status: int, started: float) -> None:
        recorder.record(
            request.method, route, status, time.perf_counter() - started, request.match_info
        )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PROBE_PATHS:
            return await handler(request)
        started = time.perf_counter()
        route = _route(request)
        outcome = _Outcome()
        span = None if tracer is None else _server_span(tracer, roots, request, route)
        if span is None or not span.is_recording():
            # Untraced, or not sampled: no context to carry, so 1% sampling costs ~nothing.
            try:
                return await _answer(request, handler, route, outcome)
            finally:
                observe(request, route, outcome.status, started)
        span.set_attributes(_server_attributes(request, route, truncate_ips))
        with trace.use_span(
            span, end_on_exit=True, record_exception=True, set_status_on_exception=True
        ):
            try:
                return await _answer(request, handler, route, outcome, span)
            finally:
                span.set_attribute("http.response.status_code", outcome.status)
                if outcome.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                observe(request, route, outcome.status, started)

    return middleware


def _server_attributes(
    request: web.Request, route: str, truncate_ips: bool
) -> dict[str, str | int]:
    version = request.version
    return server_attributes(
        request.method,
        route,
        request.path,
        f"{version.major}.{version.minor}",
        request.remote,
        request.headers.get("User-Agent"),
        request.match_info,
        truncate_ips,
        request.scheme,
    )


def server_attributes(
    method: str,
    route: str,
    path: str,
    version: str,
    remote: str | None,
    user_agent: str | None,
    ids: Mapping[str, str],
    truncate_ips: bool,
    scheme: str = "http",
) -> dict[str, str | int]:
    """A server span's attributes (OpenTelemetry's HTTP semantic conventions)."""
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "http.route": route,
        "url.path": path,
        "url.scheme": scheme,
        "network.protocol.version": version,
    }
    if remote:
        attributes["client.address"] = truncate_ip(remote) if truncate_ips else remote
    if user_agent:
        attributes["user_agent.original"] = user_agent[:256]
    for key in ("tenant", "email_id"):
        value = ids.get(key)
        if value:
            attributes[f"belfry.{key}"] = value
    return attributes


def truncate_ip(address: str) -> str:
    """The network part only: /24 for IPv4, /48 for IPv6 (what analytics tools keep)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "invalid"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def _access_log(
    method: str,
    route: str,
    status: int,
    seconds: float,
    ids: Mapping[str, str],
    level: int = logging.INFO,
) -> None:
    # Inside the span (when tracing), so the line carries the request's trace id.
    access_log.log(
        level,
        "request",
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            **{k: v for k, v in ids.items() if k in ("tenant", "email_id")},
        },
    )


HTTP_STATS = web.AppKey("http_stats", HttpStats)
HTTP_RECORDER = web.AppKey("http_recorder", RequestRecorder)
TRACER = web.AppKey("tracer", trace.Tracer)


def add_observability(
    app: web.Application,
    service: str,
    tracer: trace.Tracer | None,
    access_log_sample: float = 0.0,
    truncate_ips: bool = False,
) -> None:
    """Install the middleware and drop aiohttp's Server banner; the app's HttpStats (for
    self-reports) live under HTTP_STATS, and its tracer, when tracing is on, under TRACER.

    This makes the app's Prometheus registry (shared.prom.PROMETHEUS), which its
    `/metrics` serves."""
    stats = HttpStats()
    app[HTTP_STATS] = stats
    if tracer is not None:
        app[TRACER] = tracer
    recorder = RequestRecorder(service, stats, HttpMetrics(app_registry(app)), access_log_sample)
    app[HTTP_RECORDER] = recorder
    middleware = observability_middleware(tracer, recorder, truncate_ips)
    app.middlewares.append(middleware)  # type: ignore[arg-type]
    app.on_response_prepare.append(_drop_server_banner)
