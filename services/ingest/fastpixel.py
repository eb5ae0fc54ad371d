"""The pixel's fast path: `GET /{tenant}/pixel/{email_id}.gif` answered below aiohttp's
web stack.

A mail client's open is one small request on a keep-alive connection, and aiohttp's
request machinery (request and response objects, router, middleware, header
serialisation) cost ingest more CPU per hit than everything else it does for it
(bench/README.md). Here each connection first offers its bytes to a llhttp parser
(httptools, the parser uvicorn uses): a chunk holding exactly one plain pixel request
is answered from prebuilt bytes, after the same envelope, the same publisher
(confirm-or-spool before the answer) and the same counts as the route
(services/ingest/routes/pixel.py), through the app's RequestRecorder and, when sampled,
its own server span.

Anything else goes to aiohttp for the rest of the connection (shared.httpserver): HEAD,
HTTP/1.0, a `Connection` header other than keep-alive, a body or body headers, `Upgrade`,
`Expect`, a `traceparent` to continue, a query or a `%` in the path, ids the route would
refuse (its 404 JSON), non-ASCII bytes, a head split over two reads, two requests in one
read. Bytes that come while an answer is awaited are held and handed to aiohttp after
it, so answers keep their order.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httptools
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.ingest.keys import HOT, Hot
from services.ingest.publisher import Outcome
from services.ingest.routes.common import hit_envelope
from services.ingest.routes.pixel import GIF, HEADERS, pixel_ids_ok
from shared.contracts import HIT_OPEN_V2
from shared.httpobs import HTTP_RECORDER, TRACER, RequestRecorder, server_attributes
from shared.httpserver import FAST_PATH, FastConnection, FastPath, GuardedRequestHandler
from shared.telemetry import RootSampling

ROUTE = "/{tenant}/pixel/{email_id}.gif"
_SPAN_NAME = f"GET {ROUTE}"
# aiohttp's route: `{tenant}` and `{email_id}` match [^{}/]+.
_PIXEL_PATH = re.compile(rb"/([^{}/]+)/pixel/([^{}/]+)\.gif").fullmatch
# What aiohttp takes in one head line; a longer read is not a plain pixel request.
_MAX_READ = 8190
# Headers that ask for more than a pixel request: aiohttp handles them.
_NOT_PLAIN = frozenset(
    (b"content-length", b"transfer-encoding", b"upgrade", b"expect", b"traceparent")
)
# Held bytes beyond this pause reading until aiohttp takes them.
_MAX_HELD = 64 << 10


class _Answer:
    """The pixel's response bytes, with the current second's Date header."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._bytes = b""
        self._head = b"HTTP/1.1 200 OK\r\n" + b"".join(
            f"{name}: {value}\r\n".encode("ascii") for name, value in HEADERS.items()
        )
        self._tail = f"Content-Length: {len(GIF)}\r\n".encode("ascii")

    def bytes(self) -> bytes:
        now = self._clock()
        second = int(now)
        if second != self._second:
            date = formatdate(now, usegmt=True).encode("ascii")
            self._bytes = self._head + self._tail + b"Date: " + date + b"\r\n\r\n" + GIF
            self._second = second
        return self._bytes


class PixelFastPath:
    """The app's fast path (shared.httpserver.FAST_PATH): one PixelConnection per
    connection, once the app has started (its publisher exists)."""

    hot: Hot
    recorder: RequestRecorder
    tracer: trace.Tracer | None
    roots: RootSampling | None

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._ready = False
        self.answer = _Answer()
        # Requests answered, awaiting their answer, and connections holding bytes for
        # aiohttp until then: plain ints, for tests and debugging.
        self.answered = 0
        self.waiting = 0
        self.holding = 0

    def __call__(self, handler: GuardedRequestHandler) -> FastConnection | None:
        if not self._ready:
            hot = self._app.get(HOT)
            if hot is None:
                return None  # not started: aiohttp serves (and its route answers)
            self.hot, self.recorder = hot, self._app[HTTP_RECORDER]
            self.tracer = self._app.get(TRACER)
            self.roots = RootSampling.of(self.tracer)
            self._ready = True
        return PixelConnection(self, handler)


class PixelConnection:
    """One connection's fast path; also the parser's callbacks."""

    __slots__ = (
        "_begun",
        "_complete",
        "_handler",
        "_headers",
        "_held",
        "_held_bytes",
        "_parser",
        "_path",
        "_paused",
        "_pending",
        "_remote",
        "_url",
    )

    def __init__(self, path: PixelFastPath, handler: GuardedRequestHandler) -> None:
        self._path = path
        self._handler = handler
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._begun = 0
        self._complete = False
        self._pending = False
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        self._paused = False
        peer = handler.peername
        self._remote = str(peer[0]) if isinstance(peer, (list, tuple)) else peer

    # --- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_message_complete(self) -> None:
        self._complete = True

    # --- the connection ----------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        if self._pending or self._held is not None:
            self._hold(data)
            return True
        ids = self._plain_pixel(data)
        return ids is not None and self._serve(*ids)

    def _plain_pixel(self, data: bytes) -> tuple[str, str, CIMultiDict[str]] | None:
        """(tenant, email id, headers) when `data` is exactly one plain pixel request."""
        if len(data) > _MAX_READ or not data.isascii():
            return None
        self._url, self._headers, self._begun, self._complete = b"", [], 0, False
        parser = self._parser
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:
            return None  # aiohttp answers it (400), from the same bytes
        if not (self._complete and self._begun == 1):
            return None
        if parser.get_method() != b"GET" or parser.get_http_version() != "1.1":
            return None
        match = _PIXEL_PATH(self._url)
        if match is None:
            return None
        tenant, email_id = match.group(1).decode(), match.group(2).decode()
        if not pixel_ids_ok(tenant, email_id):
            return None  # the route's 404, and its count
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in self._headers:
            lowered = name.lower()
            if lowered in _NOT_PLAIN or (
                lowered == b"connection" and value.lower() != b"keep-alive"
            ):
                return None
            headers.add(name.decode(), value.decode())
        return tenant, email_id, headers

    def _serve(self, tenant: str, email_id: str, headers: CIMultiDict[str]) -> bool:
        """Publish the hit and answer once its batch is out (or at once, not kept, when
        the publisher has closed: stopping; the pixel is always served)."""
        path = self._path
        hot = path.hot
        started = time.perf_counter()
        span = None if path.tracer is None else self._span(tenant, email_id, headers)
        event = hit_envelope(headers, self._remote, hot.settings, HIT_OPEN_V2, tenant, email_id)
        try:
            future = hot.publisher.submit(event, span)
        except RuntimeError:
            future = asyncio.get_running_loop().create_future()
            future.set_result(Outcome.DROPPED)
        self._pending = True
        path.waiting += 1
        self._handler.fast_request_started()
        future.add_done_callback(lambda f: self._answer(f, started, span, tenant, email_id))
        return True

    def _span(self, tenant: str, email_id: str, headers: CIMultiDict[str]) -> trace.Span | None:
        path = self._path
        tracer = path.tracer
        assert tracer is not None
        if path.roots is not None:
            span = path.roots.start_root_span(_SPAN_NAME, SpanKind.SERVER)
        else:
            span = tracer.start_span(_SPAN_NAME, None, SpanKind.SERVER)
        if span is None or not span.is_recording():
            return None
        ids = {"tenant": tenant, "email_id": email_id}
        path_text = self._url.split(b"?", 1)[0].decode()
        settings = path.hot.settings.common
        span.set_attributes(
            server_attributes(
                "GET",
                ROUTE,
                path_text,
                "1.1",
                self._remote,
                headers.get("User-Agent"),
                ids,
                settings.truncate_ips,
            )
        )
        return span

    def _answer(
        self, future: Any, started: float, span: trace.Span | None, tenant: str, email_id: str
    ) -> None:
        outcome = Outcome.DROPPED if future.cancelled() or future.exception() else future.result()
        path = self._path
        path.hot.metrics.opened[outcome].inc()
        path.answered += 1
        path.waiting -= 1
        transport = self._handler.transport
        status = 200
        if transport is None or transport.is_closing():
            status = 499  # the client went away: nothing to answer (as the middleware)
        else:
            transport.write(path.answer.bytes())
        elapsed = time.perf_counter() - started
        ids = {"tenant": tenant, "email_id": email_id}
        if span is None:
            path.recorder.record("GET", ROUTE, status, elapsed, ids)
        else:
            span.set_attribute("http.response.status_code", status)
            with trace.use_span(span, end_on_exit=True):  # the access log line's trace id
                path.recorder.record("GET", ROUTE, status, elapsed, ids)
        self._pending = False
        self._handler.fast_request_done()
        if self._held is not None:
            self._release()

    # --- handing over to aiohttp -------------------------------------------------------

    def _hold(self, data: bytes) -> None:
        if self._held is None:
            self._held = []
            self._path.holding += 1
        self._held.append(data)
        self._held_bytes += len(data)
        transport = self._handler.transport
        if self._held_bytes > _MAX_HELD and not self._paused and transport is not None:
            transport.pause_reading()
            self._paused = True
        if not self._pending:
            self._release()

    def _release(self) -> None:
        held = b"".join(self._held or ())
        self._held, self._held_bytes = None, 0
        self._path.holding -= 1
        transport = self._handler.transport
        if self._paused and transport is not None:
            transport.resume_reading()
        self._paused = False
        self._handler.leave_fast_path(held)


def add_pixel_fast_path(app: web.Application) -> None:
    """Serve the app's pixel requests on the fast path (when served by shared.httpserver)."""
    fast_path: FastPath = PixelFastPath(app)
    app[FAST_PATH] = fast_path
