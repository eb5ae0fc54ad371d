"""The console's alerts view: the page (`GET /{tenant}/console/alerts`) and a same-origin
proxy for its calls to the alerting API.

Why a proxy: the page keeps one origin and its strict CSP (`connect-src 'self'`), so it
works the same under `make run` (alerting on its own port) and behind the one-host
nginx / Ingress routing (where every path the page uses falls under `/`, the api's), and
the alerting service needs no CORS and no public route.

`/{tenant}/console/api/<path>` → `<API_ALERTING_URL>/api/v1/<path>`:
- only the calls the view makes are passed (an allow-list of method and path; anything
  else is a 404 here), with the query string;
- the caller's `Authorization: Bearer <api key>` is checked against the path's tenant
  (as every `/{tenant}/` route of the api does: 401, or 404 for another tenant's key)
  and passed through unchanged, so the alerting service checks it again and scopes every
  answer to the key's tenant itself;
- bodies are bounded both ways (`MAX_REQUEST`, `MAX_RESPONSE`) and every call has the
  console's timeout; the SSE stream (`alerts/stream`) is relayed chunk by chunk, with a
  read timeout longer than the alerting keep-alive, so a dead upstream is noticed;
- the alerting service down, slow or answering 5xx is a 503 / 502 JSON `{"error": ...}`
  with `Retry-After`, never a 500;
- on shutdown the open streams end at once (the page reconnects to another instance),
  instead of holding the drain until its timeout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import aiohttp
import orjson
from aiohttp import web

from services.api.access import authorize
from services.api.keys import SETTINGS
from services.api.routes import dashboard
from shared.bodies import read_limited

log = logging.getLogger("belfry.api.console")

SESSION = web.AppKey("console_alerting_session", aiohttp.ClientSession)
STREAMS: web.AppKey[set[aiohttp.ClientResponse]] = web.AppKey("console_alert_streams")
MAX_REQUEST = 64 * 1024
MAX_RESPONSE = 4 * 1024 * 1024
MAX_QUERY = 4096
# The alerting stream writes a keep-alive every 15 s: silence beyond this is a dead link.
STREAM_READ_TIMEOUT = 45.0

# One path segment: fingerprints, uuids, names; never `.` or `..` (no first dot).
_SEG = r"[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,99}"
ALLOWED: dict[str, re.Pattern[str]] = {
    "GET": re.compile(
        rf"alerts|alerts/stream|alerts/{_SEG}|alerts/{_SEG}/timeline|silences|silences/{_SEG}"
        rf"|rules|channels|notifications|notifications/{_SEG}|stats|activity"
    ),
    "POST": re.compile(rf"alerts/{_SEG}/(ack|resolve)|silences|notifications/{_SEG}/replay"),
    "DELETE": re.compile(rf"silences/{_SEG}"),
}
_PASSED_HEADERS = ("Authorization", "Content-Type", "Accept", "traceparent", "X-Request-ID")


def _error(status: int, reason: str, retry: bool = False) -> web.Response:
    headers = {"Retry-After": "5"} if retry else {}
    return web.Response(
        body=orjson.dumps({"error": reason}),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store", **headers},
    )


async def _request_body(request: web.Request) -> bytes | web.Response:
    if request.content_length is not None and request.content_length > MAX_REQUEST:
        return _error(413, f"body larger than {MAX_REQUEST} bytes")
    body = await read_limited(request.content, MAX_REQUEST)
    if body is None:
        return _error(413, f"body larger than {MAX_REQUEST} bytes")
    return body


async def proxy(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    allowed = ALLOWED.get(request.method)
    if allowed is None or not allowed.fullmatch(path):
        return _error(404, "not a console call")
    if len(request.query_string) > MAX_QUERY:
        return _error(400, f"query string longer than {MAX_QUERY} characters")
    await authorize(request)  # 401 / 404 as on every /{tenant}/ route
    body = await _request_body(request)
    if isinstance(body, web.Response):
        return body
    targets = request.app[SETTINGS].console
    url = f"{targets.alerting_url}/api/v1/{path}"
    if request.query_string:
        url += "?" + request.query_string
    headers = {h: request.headers[h] for h in _PASSED_HEADERS if h in request.headers}
    stream = path == "alerts/stream"
    timeout = aiohttp.ClientTimeout(
        total=None if stream else targets.timeout_seconds,
        sock_connect=targets.timeout_seconds,
        sock_read=STREAM_READ_TIMEOUT if stream else targets.timeout_seconds,
    )
    session = request.app[SESSION]
    try:
        async with session.request(
            request.method, url, data=body or None, headers=headers, timeout=timeout
        ) as upstream:
            if stream and upstream.status == 200:
                return await _relay_stream(request, upstream)
            return await _answer(upstream)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("console: alerting unreachable", extra={"error": repr(exc)[:200]})
        return _error(503, "the alerting service is unavailable; retry later", retry=True)


async def _answer(upstream: aiohttp.ClientResponse) -> web.Response:
    if upstream.content_length is not None and upstream.content_length > MAX_RESPONSE:
        return _error(502, "the alerting service's answer is too large")
    data = await read_limited(upstream.content, MAX_RESPONSE)
    if data is None:
        return _error(502, "the alerting service's answer is too large")
    if upstream.status >= 500:
        status = 503 if upstream.status == 503 else 502
        return _error(status, f"the alerting service answered {upstream.status}", retry=True)
    headers = {"Cache-Control": "no-store"}
    if "Retry-After" in upstream.headers:
        headers["Retry-After"] = upstream.headers["Retry-After"]
    return web.Response(
        body=data,
        status=upstream.status,
        headers=headers,
        content_type=upstream.content_type if data else None,
    )


async def _relay_stream(
    request: web.Request, upstream: aiohttp.ClientResponse
) -> web.StreamResponse:
    """Server-Sent Events passed on as they come (nginx: no buffering, see X-Accel)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    streams = request.app[STREAMS]
    streams.add(upstream)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError):
        # The upstream went away mid-stream: end ours; the page reconnects.
        log.info("console: alert stream upstream ended")
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        streams.discard(upstream)
    return response


async def alerts_page(request: web.Request) -> web.Response:
    return dashboard.page_response(request, "alerts")


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    # No cookies, no proxies from the environment: only the configured alerting URL.
    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=True,
    )
    app[SESSION] = session
    app[STREAMS] = set()
    yield
    await session.close()


async def _end_streams(app: web.Application) -> None:
    """Runs before the server waits for handlers: each stream's handler then returns."""
    streams = app[STREAMS]
    for upstream in list(streams):
        upstream.close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_session_ctx)
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/{tenant}/console/alerts", alerts_page)
    for method in ALLOWED:
        app.router.add_route(method, "/{tenant}/console/api/{path:.+}", proxy)
