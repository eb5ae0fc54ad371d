"""The HTTP server below the app: the defences aiohttp's server does not have.

- A deadline for request heads. aiohttp waits as long as a client likes for the request
  line and headers (slowloris: thousands of connections each trickling a header held
  every one for minutes). Here a connection must deliver a complete head within
  `header_timeout` of connecting, or of the first byte of its next request, or it is
  closed.
- A cap on open connections per process: beyond `max_connections` a new connection gets
  a 503 and is closed at once, so a flood cannot exhaust file descriptors or memory; and
  once a burst of connections is over, the memory it took goes back to the OS.
- Requests too malformed to reach the app (bad request line, unsupported
  Content-Encoding, header too long) are answered with JSON like every other error,
  logged at DEBUG (they are what scanners send), and without aiohttp's `Server` banner.

An app may also answer one route below aiohttp's web stack (`FAST_PATH`, ingest's
pixel): each connection first offers its bytes to the fast path, and from the first
request it declines on, aiohttp serves the rest of that connection.

`start_server` serves an app with these; `shared.serve.serve` runs every service on it.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.prom import app_registry
from shared.settings import CommonSettings

log = logging.getLogger("belfry.http")


class ConnectionMetrics:
    """The connection figures of one served app, on its registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "belfry_http_open_connections", "HTTP connections open now", registry=registry
        )
        self.refused = Counter(
            "belfry_http_refused_connections",
            "HTTP connections closed on arrival because the process held its maximum",
            registry=registry,
        )
        self.head_timeouts = Counter(
            "belfry_http_header_timeouts",
            "HTTP connections closed because a request head did not complete in time",
            registry=registry,
        )


_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 32\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    b'{"error":"too many connections"}'
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout: float = 10.0
    max_connections: int = 4096
    keepalive_timeout: float = 75.0

    @classmethod
    def of(cls, common: CommonSettings) -> HttpLimits:
        return cls(
            header_timeout=common.http_header_timeout,
            max_connections=common.http_max_connections,
            keepalive_timeout=common.http_keepalive_timeout,
        )


class ConnectionCount:
    """Open connections of one listener, against its cap.

    When at least `burst` connections have closed since the peak, leaving a quarter of it
    or less, `on_burst_over` runs (serve: hand the freed memory back to the OS) and the
    peak starts again from there. `metrics` (by default on a registry of its own, served
    nowhere) count the connections for the app's `/metrics`."""

    def __init__(
        self,
        limit: int,
        on_burst_over: Callable[[], None] | None = None,
        burst: int = 512,
        metrics: ConnectionMetrics | None = None,
    ) -> None:
        self.limit = limit
        self.metrics = metrics or ConnectionMetrics(CollectorRegistry())
        self.open = 0
        self.peak = 0
        self._on_burst_over = on_burst_over
        self._burst = burst

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.metrics.open.inc()
        return True

    def give_back(self) -> None:
        self.open -= 1
        self.metrics.open.dec()
        if self.peak - self.open >= self._burst and self.open <= self.peak // 4:
            self.peak = self.open
            if self._on_burst_over is not None:
                self._on_burst_over()


class Refusal(asyncio.Protocol):
    """A connection beyond the cap: answered 503 and closed.

    The answer goes out before the client's request has been read; closing a socket with
    unread bytes makes the kernel reset it, and the reset can overtake the answer. So the
    connection is half-closed after the answer and the request read and dropped until the
    client closes, for `linger` seconds at most (and only while fewer than `max_lingering`
    refusals linger: beyond that, closed at once)."""

    lingering = 0

    def __init__(self, refused: Counter, linger: float = 1.0, max_lingering: int = 1024) -> None:
        self._refused = refused
        self._linger = linger
        self._max_lingering = max_lingering
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._refused.inc()
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.write(_TOO_MANY)
        if Refusal.lingering >= self._max_lingering or not transport.can_write_eof():
            transport.close()
            return
        Refusal.lingering += 1
        transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(self._linger, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request of a connection we do not serve

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            Refusal.lingering -= 1


class BannerlessResponse(web.Response):
    """A response without aiohttp's `Server: Python/… aiohttp/…` header, for answers that
    never pass the app's `on_response_prepare` (see shared.httpobs for the app's)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


def json_error(status: int, reason: str) -> BannerlessResponse:
    response = BannerlessResponse(
        body=orjson.dumps({"error": reason}), status=status, content_type="application/json"
    )
    response.force_close()
    return response


class FastConnection(Protocol):
    """One connection's fast path (see FAST_PATH)."""

    def feed(self, data: bytes) -> bool:
        """True: the bytes are taken (answered, or held until an answer is out); False:
        aiohttp serves them, and the rest of the connection."""
        ...


# Called once per admitted connection: its fast path, or None (all to aiohttp).
FastPath = Callable[["GuardedRequestHandler"], FastConnection | None]
FAST_PATH: web.AppKey[FastPath] = web.AppKey("http_fast_path")


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's protocol with a head deadline, a connection cap and JSON errors.

    Relies on internals of aiohttp 3.14's RequestHandler, checked by
    tests/integration/test_http_hardening.py and tests/integration/test_pixel_fast_path.py:
    `_request_count` grows when the parser completes a request head; `_waiter` is
    pending while the connection waits for the next request; and, for a fast path's
    requests, `_request_in_progress` / `_handler_waiter` (a graceful shutdown waits for
    the answer) and `_next_keepalive_close_time` / `_keepalive_handle` (the idle
    connection's close)."""

    def __init__(
        self,
        manager: web.Server,
        *,
        limits: HttpLimits,
        count: ConnectionCount,
        fast_path: FastPath | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._count = count
        self._admitted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0
        self._fast_path = fast_path
        self._fast: FastConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._count.take():
            # Accepted in the same burst as the connections that filled the cap (the
            # protocol factory saw room): refuse here, without lingering.
            self._count.metrics.refused.inc()
            cast(asyncio.Transport, transport).write(_TOO_MANY)
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)
        self._arm_head_timer()
        if self._fast_path is not None:
            self._fast = self._fast_path(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return  # never handed to aiohttp
        self._admitted = False
        self._fast = None
        self._count.give_back()
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        fast = self._fast
        if fast is not None and not (self._force_close or self._close):
            if fast.feed(data):
                return
            self._fast = None  # aiohttp's from here on
        self._to_aiohttp(data)

    def leave_fast_path(self, held: bytes) -> None:
        """The fast path hands the connection to aiohttp, with the bytes it held."""
        self._fast = None
        if held and not (self._force_close or self._close):
            self._to_aiohttp(held)

    def fast_request_started(self) -> None:
        """A request head the fast path answers: as aiohttp's own, it ends the head
        deadline, counts, and keeps the connection from closing as idle."""
        self._request_count += 1
        self._disarm_head_timer()
        self._request_in_progress = True
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout

    def fast_request_done(self) -> None:
        """Its answer is out: a shutdown waiting for it goes on, the idle clock restarts."""
        self._request_in_progress = False
        waiter = self._handler_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.transport is None or self._force_close or self._keepalive_timeout <= 0:
            return
        close_time = self._loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(close_time, self._process_keepalive)

    def _to_aiohttp(self, data: bytes) -> None:
        if self._head_timer is None and data and self._waiting_for_request():
            self._arm_head_timer()  # the first byte of the next request's head
        super().data_received(data)
        if self._request_count != self._heads_at_arm:
            self._disarm_head_timer()  # a head completed

    def _waiting_for_request(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm_head_timer(self) -> None:
        self._heads_at_arm = self._request_count
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_late)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport is not None and self._request_count == self._heads_at_arm:
            self._count.metrics.head_timeouts.inc()
            log.debug("request head timed out", extra={"timeout_s": self._limits.header_timeout})
            self.force_close()

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp logs at ERROR, with a trace, a body it could not decode once the app
        answered 400 (while draining the rest), and clients that hung up: DEBUG here."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, (web.RequestPayloadError, ConnectionError)):
            log.debug("client error after the answer", extra={"error": repr(exc)})
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request the parser refused (400), or an error no middleware answered (5xx)."""
        if status >= 500:
            if exc is not None:
                self.log_exception("unhandled error", exc_info=exc)
            reason = "internal error" if status == 500 else "timed out"
        else:
            log.debug("malformed request", extra={"status": status, "error": message or ""})
            if isinstance(exc, ContentEncodingError):
                reason = "unsupported Content-Encoding"
            else:
                reason = "malformed request"
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot answer the error")
        return json_error(status, reason)


@dataclass
class RunningServer:
    runner: web.AppRunner
    listener: asyncio.Server
    count: ConnectionCount

    @property
    def port(self) -> int:
        return int(self.listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, let in-flight requests finish, run the app's cleanup."""
        self.listener.close()
        await self.runner.cleanup()
        await self.listener.wait_closed()


CONNECTION_METRICS = web.AppKey("http_connection_metrics", ConnectionMetrics)


def _connection_metrics(app: web.Application) -> ConnectionMetrics:
    """The app's connection figures, registered once (before the runner freezes the app)."""
    metrics = app.get(CONNECTION_METRICS)
    if metrics is None:
        metrics = app[CONNECTION_METRICS] = ConnectionMetrics(app_registry(app))
    return metrics


async def start_server(
    app: web.Application,
    host: str,
    port: int,
    limits: HttpLimits,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = 20.0,
) -> RunningServer:
    """Run the app's startup, then listen on host:port with the guarded protocol. The
    connection figures go to the app's registry (shared.prom), made here for an app
    without one."""
    handler_args: dict[str, Any] = {
        "access_log": None,
        "keepalive_timeout": limits.keepalive_timeout,
    }
    metrics = _connection_metrics(app)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **handler_args)
    await runner.setup()
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()
    trim = memory_trimmer()
    pending: list[asyncio.TimerHandle] = []

    def burst_over() -> None:
        # A moment later, once the closed connections' tasks are gone; one trim per drain.
        if not pending or pending[0].cancelled() or pending[0].when() < loop.time():
            pending[:] = [loop.call_later(1.0, trim)]

    count = ConnectionCount(limits.max_connections, burst_over, metrics=metrics)
    fast_path = app.get(FAST_PATH)

    def protocol() -> asyncio.Protocol:
        if count.open >= count.limit:
            return Refusal(metrics.refused)
        return GuardedRequestHandler(
            server, limits=limits, count=count, fast_path=fast_path, loop=loop, **handler_args
        )

    try:
        listener = await loop.create_server(
            protocol, host, port, reuse_port=reuse_port or None, backlog=1024
        )
    except BaseException:
        await runner.cleanup()
        raise
    return RunningServer(runner, listener, count)


def memory_trimmer() -> Callable[[], None]:
    """A function that collects garbage and hands freed heap memory back to the OS
    (glibc's `malloc_trim`; only the collection elsewhere). After 9,000 slow connections
    had been closed, RSS stayed at 77 MB (42 MB before); after this, 58 MB."""
    malloc_trim: Callable[[int], int] | None = None
    if sys.platform.startswith("linux"):
        try:
            malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            malloc_trim = None

    def run() -> None:
        collected = gc.collect()
        if malloc_trim is not None:
            malloc_trim(0)
        log.info("memory trimmed after a burst of connections", extra={"collected": collected})

    return run
