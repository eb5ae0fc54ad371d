"""Silences CRUD: label matchers + a time window, with an author and a comment. A firing
alert whose labels (alertname, severity, rule labels, series labels) all match an active
silence of its tenant becomes `silenced` at the next evaluation: no notifications."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from services.alerting.keys import DATABASE, DEPS
from services.alerting.repos.codec import Row, loads
from services.alerting.repos.silences import PgSilenceRepo, SilenceRepo, SilenceSpec
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

_FIELDS = {"matchers", "starts_at", "ends_at", "duration", "author", "comment"}


def silence_json(row: Row, now: datetime) -> dict[str, Any]:
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


def _parse(body: dict[str, Any], now: datetime) -> SilenceSpec:
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
    return SilenceSpec([m.to_doc() for m in matchers], starts, ends, author.strip(), comment)


def checked(body: Any, now: datetime) -> SilenceSpec:
    """The silence `body` describes; else a 400 with every field's problem."""
    if not isinstance(body, dict):
        fail(400, "body must be a JSON object")
    try:
        return _parse(body, now)
    except RuleError as exc:
        fail(400, "invalid silence", exc.errors)


async def create(repo: SilenceRepo, tenant: str, body: Any, now: datetime) -> dict[str, Any]:
    return silence_json(await repo.create(tenant, checked(body, now)), now)


def _id(raw: str) -> str:
    silence_id = parse_uuid(raw)
    if silence_id is None:
        fail(404, "no such silence")
    return silence_id


async def fetch(repo: SilenceRepo, tenant: str, raw_id: str, now: datetime) -> dict[str, Any]:
    row = await repo.get(tenant, _id(raw_id))
    if row is None:
        fail(404, "no such silence")
    return silence_json(row, now)


async def replace(
    repo: SilenceRepo, tenant: str, raw_id: str, body: Any, now: datetime
) -> dict[str, Any]:
    silence_id = _id(raw_id)
    row = await repo.replace(tenant, silence_id, checked(body, now))
    if row is None:
        fail(404, "no such silence")
    return silence_json(row, now)


async def remove(repo: SilenceRepo, tenant: str, raw_id: str) -> None:
    if not await repo.delete(tenant, _id(raw_id)):
        fail(404, "no such silence")


def _repo(request: web.Request) -> PgSilenceRepo:
    return PgSilenceRepo(request.app[DATABASE])


async def list_silences(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    now = request.app[DEPS].clock()
    active = request.query.get("active")
    if active not in (None, "1", "true", "0", "false"):
        fail(400, "invalid query", {"active": "must be true or false"})
    rows = await _repo(request).of_tenant(tenant, now if active in ("1", "true") else None)
    return json_response({"silences": [silence_json(r, now) for r in rows]})


async def create_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    body = await read_object(request)
    return json_response(await create(_repo(request), tenant, body, request.app[DEPS].clock()), 201)


async def get_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    silence_id = request.match_info["silence_id"]
    return json_response(await fetch(_repo(request), tenant, silence_id, request.app[DEPS].clock()))


async def replace_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    silence_id = _id(request.match_info["silence_id"])
    body = await read_object(request)
    now = request.app[DEPS].clock()
    return json_response(await replace(_repo(request), tenant, silence_id, body, now))


async def delete_silence(request: web.Request) -> web.Response:
    tenant = await tenant_of(request)
    await remove(_repo(request), tenant, request.match_info["silence_id"])
    return web.Response(status=204)


def add_silence_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_get("/api/v1/silences/{silence_id}", get_silence)
    app.router.add_put("/api/v1/silences/{silence_id}", replace_silence)
    app.router.add_delete("/api/v1/silences/{silence_id}", delete_silence)
