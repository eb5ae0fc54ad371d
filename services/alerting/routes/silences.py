"""Silences CRUD: label matchers + a time window, with an author and a comment. A firing
alert whose labels (alertname, severity, rule labels, series labels) all match an active
silence of its tenant becomes `silenced` at the next evaluation: no notifications."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from services.alerting.keys import DATABASE, DEPS
from services.alerting.routes.common import (
    fail,
    iso,
    json_response,
    parse_time,
    parse_uuid,
    read_object,
    tenant_of,
)
from services.alerting.rules.parse import ParseError, parse_duration
from services.alerting.rules.validate import RuleError, matchers_from_doc
from services.alerting.store import dumps, loads

_SELECT = (
    "SELECT id, matchers, starts_at, ends_at, author, comment, created_at, updated_at"
    " FROM alert_silences"
)
_FIELDS = {"matchers", "starts_at", "ends_at", "duration", "author", "comment"}


def silence_json(row: Any, now: datetime) -> dict[str, Any]:
    state = "pending" if row["starts_at"] > now else "active" if row["ends_at"] > now else "expired"
    return {
        "id": str(row["id"]),
        "matchers": loads(row["matchers"]),
        "starts_at": iso(row["starts_at"]),
        "ends_at": iso(row["ends_at"]),
        "author": row["author"],
        "comment": row["comment"],
        "state": state,
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _parse(
    body: dict[str, Any], now: datetime
) -> tuple[list[dict[str, str]], datetime, datetime, str, str]:
    errors: dict[str, str] = {}
    for key in body:
        if key not in _FIELDS:
            errors[str(key)] = "unknown field"
    matchers = matchers_from_doc(body.get("matchers"), errors)
    if not matchers and "matchers" not in errors:
        errors["matchers"] = "required: at least one matcher"
    starts = now
    if body.get("starts_at") is not None:
        try:
            starts = parse_time(body["starts_at"], "starts_at")
        except web.HTTPException:
            errors["starts_at"] = "must be an RFC 3339 timestamp with offset"
    ends: datetime | None = None
    if body.get("ends_at") is not None and body.get("duration") is not None:
        try:  # ends_at wins, but a duration given must still be one
            parse_duration(body["duration"])
        except ParseError as exc:
            errors["duration"] = str(exc)
    if body.get("ends_at") is not None:
        try:
            ends = parse_time(body["ends_at"], "ends_at")
        except web.HTTPException:
            errors["ends_at"] = "must be an RFC 3339 timestamp with offset"
    elif body.get("duration") is not None:
        try:
            ends = starts + timedelta(seconds=parse_duration(body["duration"]))
        except ParseError as exc:
            errors["duration"] = str(exc)
    else:
        errors["ends_at"] = "required: ends_at or duration"
    if ends is not None and ends <= starts and "ends_at" not in errors:
        errors["ends_at"] = "must be after starts_at"
    author = body.get("author")
    if not isinstance(author, str) or not 1 <= len(author.strip()) <= 200:
        errors["author"] = "required: a string of 1 to 200 characters"
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 2000:
        errors["comment"] = "must be a string of at most 2000 characters"
    if errors:
        raise RuleError(errors)
    assert ends is not None and isinstance(author, str)
    return [m.to_doc() for m in matchers], starts, ends, author.strip(), comment


async def list_silences(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    now = request.app[DEPS].clock()
    pool = await request.app[DATABASE].pool()
    query = f"{_SELECT} WHERE tenant_id = $1"
    args: list[Any] = [tenant]
    active = request.query.get("active")
    if active not in (None, "1", "true", "0", "false"):
        fail(400, "invalid query", {"active": "must be true or false"})
    if active in ("1", "true"):
        query += " AND starts_at <= $2 AND ends_at > $2"
        args.append(now)
    rows = await pool.fetch(query + " ORDER BY starts_at DESC, id", *args)
    return json_response({"silences": [silence_json(r, now) for r in rows]})


async def create_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    now = request.app[DEPS].clock()
    try:
        matchers, starts, ends, author, comment = _parse(await read_object(request), now)
    except RuleError as exc:
        fail(400, "invalid silence", exc.errors)
    pool = await request.app[DATABASE].pool()
    row = await pool.fetchrow(
        "INSERT INTO alert_silences (id, tenant_id, matchers, starts_at, ends_at, author, comment)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " RETURNING id, matchers, starts_at, ends_at, author, comment, created_at, updated_at",
        str(uuid.uuid4()),
        tenant,
        dumps(matchers),
        starts,
        ends,
        author,
        comment,
    )
    return json_response(silence_json(row, now), 201)


def _id(request: web.Request) -> str:
    silence_id = parse_uuid(request.match_info["silence_id"])
    if silence_id is None:
        fail(404, "no such silence")
    return silence_id


async def get_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    pool = await request.app[DATABASE].pool()
    row = await pool.fetchrow(f"{_SELECT} WHERE id = $1 AND tenant_id = $2", _id(request), tenant)
    if row is None:
        fail(404, "no such silence")
    return json_response(silence_json(row, request.app[DEPS].clock()))


async def replace_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    silence_id = _id(request)
    now = request.app[DEPS].clock()
    try:
        matchers, starts, ends, author, comment = _parse(await read_object(request), now)
    except RuleError as exc:
        fail(400, "invalid silence", exc.errors)
    pool = await request.app[DATABASE].pool()
    row = await pool.fetchrow(
        "UPDATE alert_silences SET matchers = $3, starts_at = $4, ends_at = $5, author = $6,"
        " comment = $7, updated_at = now() WHERE id = $1 AND tenant_id = $2"
        " RETURNING id, matchers, starts_at, ends_at, author, comment, created_at, updated_at",
        silence_id,
        tenant,
        dumps(matchers),
        starts,
        ends,
        author,
        comment,
    )
    if row is None:
        fail(404, "no such silence")
    return json_response(silence_json(row, now))


async def delete_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    pool = await request.app[DATABASE].pool()
    status = await pool.execute(
        "DELETE FROM alert_silences WHERE id = $1 AND tenant_id = $2", _id(request), tenant
    )
    if not status.endswith(" 1"):
        fail(404, "no such silence")
    return web.Response(status=204)


def add_silence_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_get("/api/v1/silences/{silence_id}", get_silence)
    app.router.add_put("/api/v1/silences/{silence_id}", replace_silence)
    app.router.add_delete("/api/v1/silences/{silence_id}", delete_silence)
