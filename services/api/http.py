"""JSON answers and errors of the api routes, and the checks every request passes.

Errors are raised as aiohttp HTTP exceptions with a JSON `{"error": ...}` body (plus
`fields` for validation), so a handler can stop from inside a helper.

Postgres text cannot hold a NUL character (asyncpg raises, which would be a 500), and no
field of this api has a use for one: `refuse_nul` (a middleware) refuses it anywhere in
the path or query string, and `read_json` anywhere in a body, keys included — one check
for every field, present and future, instead of one per field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

# Largest request body (the app's client_max_size): 100 links of 2 kB fit easily.
MAX_BODY = 1 << 20


def json_response(data: Any, status: int = 200) -> web.Response:
    """An answer: a contract type (services/api/contracts.py) or plain JSON data."""
    body = msgspec.json.encode(data) if isinstance(data, msgspec.Struct) else orjson.dumps(data)
    return web.Response(body=body, status=status, content_type="application/json")


def _error(cls: type[web.HTTPException], reason: str, **extra: Any) -> web.HTTPException:
    return cls(
        text=orjson.dumps({"error": reason, **extra}).decode(), content_type="application/json"
    )


def bad_request(reason: str, fields: dict[str, str] | None = None) -> web.HTTPException:
    return _error(web.HTTPBadRequest, reason, **({"fields": fields} if fields else {}))


def not_found(reason: str = "not found") -> web.HTTPException:
    return _error(web.HTTPNotFound, reason)


def unavailable(reason: str) -> web.HTTPException:
    return _error(web.HTTPServiceUnavailable, reason)


NUL = "\x00"


def nul_at(doc: Any, where: str = "body") -> str | None:
    """Where the first NUL character of a parsed JSON document is (`body.links[2]`), or
    None. orjson bounds the nesting depth, so the recursion is bounded too."""
    if isinstance(doc, str):
        return where if NUL in doc else None
    if isinstance(doc, list):
        for index, item in enumerate(doc):
            found = nul_at(item, f"{where}[{index}]")
            if found:
                return found
    elif isinstance(doc, dict):
        for key, value in doc.items():
            if NUL in key:
                return where
            found = nul_at(value, f"{where}.{key}")
            if found:
                return found
    return None


@web.middleware
async def refuse_nul(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """400 for a NUL character in the (decoded) path or query string."""
    if NUL in request.path:
        raise bad_request("path contains a NUL character", {"path": "contains a NUL character"})
    for name, value in request.query.items():
        if NUL in name or NUL in value:
            field = name.replace(NUL, "\\0")
            raise bad_request("query contains a NUL character", {field: "contains a NUL character"})
    return await handler(request)


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The request body as JSON; `empty` when there is none. 400 or 413 (JSON) otherwise.
    The size limit is MAX_BODY, the app's `client_max_size`. A string holding a NUL
    character (which Postgres refuses) is a 400 naming where it is."""
    try:
        raw = await request.read()
    except RequestPayloadError:
        # A body aiohttp cannot decode: corrupt deflate/gzip, broken chunked framing.
        raise bad_request("body cannot be decoded (Content-Encoding or framing)") from None
    except web.HTTPRequestEntityTooLarge:
        limit = MAX_BODY
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit,
            actual_size=request.content_length or limit + 1,
            text=orjson.dumps({"error": f"body larger than {limit} bytes"}).decode(),
            content_type="application/json",
        ) from None
    if not raw.strip():
        return empty
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("body is not valid JSON") from None
    where = nul_at(doc)
    if where:
        raise bad_request("body contains a NUL character", {where: "contains a NUL character"})
    return doc
