"""JSON answers and errors of the api routes.

Errors are raised as aiohttp HTTP exceptions with a JSON `{"error": ...}` body (plus
`fields` for validation), so a handler can stop from inside a helper.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

# Largest request body (the app's client_max_size): 100 links of 2 kB fit easily.
MAX_BODY = 1 << 20


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


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


async def read_json(request: web.Request, *, empty: Any = None) -> Any:
    """The request body as JSON; `empty` when there is none. 400 or 413 (JSON) otherwise.
    The size limit is MAX_BODY, the app's `client_max_size`."""
    try:
        raw = await request.read()
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
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("body is not valid JSON") from None
