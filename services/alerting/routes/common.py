"""What every management route shares: the tenant of the bearer key, JSON in and out,
errors as `{"error": ..., "fields": {...}}`, and timestamps.

Input that Postgres or Python cannot hold is refused here, once for every route: NUL
characters (in the path, the query string or anywhere in a JSON body) and timestamps
outside `MIN_TIME`..`MAX_TIME`."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import msgspec
import orjson
from aiohttp import web

from services.alerting.keys import DATABASE
from services.alerting.rules.validate import nul_field
from shared.auth import require_tenant
from shared.db import UNAVAILABLE

log = logging.getLogger("belfry.alerting.api")
MAX_LIMIT = 1000
# Accepted timestamps: far enough from Python's and Postgres's limits that a day or a
# silence's duration (rules/parse.py MAX_DURATION: 100 years) can be added or taken off.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, msgspec.Struct):  # a contract type (services/alerting/contracts.py)
        return msgspec.to_builtins(value)
    raise TypeError


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=_default),
        status=status,
        content_type="application/json",
    )


def fail(status: int, message: str, fields: dict[str, str] | None = None) -> NoReturn:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    raise _ERRORS[status](text=orjson.dumps(body).decode(), content_type="application/json")


T = TypeVar("T")


def found(thing: T | None, what: str) -> T:
    """`thing`, or the 404 `no such <what>` when it is None."""
    if thing is None:
        fail(404, f"no such {what}")
    return thing


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
}


async def tenant_of(request: web.Request) -> str:
    return await require_tenant(request, await request.app[DATABASE].pool())


async def read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        fail(400, "a JSON body is required")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        fail(400, f"body is not JSON: {exc}")
    nul = nul_field(body)
    if nul is not None:
        fail(400, "invalid body", {nul: "must not contain NUL characters"})
    return body


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        fail(400, "body must be a JSON object")
    return body


def parse_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def parse_time(raw: Any, field: str) -> datetime:
    if not isinstance(raw, str):
        fail(400, "invalid parameters", {field: "must be an RFC 3339 timestamp"})
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        fail(400, "invalid parameters", {field: "must be an RFC 3339 timestamp"})
    if value.tzinfo is None:
        fail(400, "invalid parameters", {field: "must carry a UTC offset"})
    if not MIN_TIME <= value < MAX_TIME:  # compared in UTC, so no offset can overflow
        fail(400, "invalid parameters", {field: f"must be between {MIN_TIME:%Y} and {MAX_TIME:%Y}"})
    return value


def parse_limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(400, "invalid parameters", {"limit": "must be an integer"})
    if not 1 <= value <= MAX_LIMIT:
        fail(400, "invalid parameters", {"limit": f"must be between 1 and {MAX_LIMIT}"})
    return value


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Under /api/: the database away is a 503 (JSON). aiohttp's own 404/405 and
    unexpected errors become JSON in shared/httpobs.py, for every service."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        return json_response({"error": "the path and query must not contain NUL characters"}, 400)
    try:
        return await handler(request)
    except UNAVAILABLE as exc:
        log.warning("api: database unavailable", extra={"error": str(exc)[:300]})
        return json_response({"error": "database unavailable; retry later"}, 503)
