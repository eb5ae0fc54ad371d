"""Silences CRUD: label matchers + a time window, with an author and a comment. A firing
alert whose labels (alertname, severity, rule labels, series labels) all match an active
silence of its tenant becomes `silenced` at the next evaluation: no notifications."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from services.alerting.contracts import (
    Silence,
    SilenceInput,
    Silences,
    StoredMatcher,
)
from services.alerting.keys import DATABASE, DEPS
from services.alerting.repos.codec import Row, loads
from services.alerting.repos.silences import PgSilenceRepo, SilenceRepo, SilenceSpec
from services.alerting.routes.common import (
    fail,
    found,
    json_response,
    parse_time,
    parse_uuid,
    read_object,
    tenant_of,
)
from services.alerting.rules.matchdoc import check_matchers, matchers_of
from services.alerting.rules.parse import ParseError, parse_duration
from services.alerting.rules.validate import RuleError
from shared.decoding import field_values


def silence_json(row: Row, now: datetime) -> Silence:
    state: Literal["pending", "active", "expired"] = (
        "pending" if row["starts_at"] > now else "active" if row["ends_at"] > now else "expired"
    )
    return Silence(
        id=str(row["id"]),
        matchers=[StoredMatcher(**m) for m in loads(row["matchers"])],
        starts_at=row["starts_at"].isoformat(),
        ends_at=row["ends_at"].isoformat(),
        author=row["author"],
        comment=row["comment"],
        state=state,
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )


# Today's wording for a field whose value has the wrong type or is missing.
_MESSAGES = {
    "matchers": "required: a list of {label, op, value} or an object of label values",
    "author": "required: a string of 1 to 200 characters",
    "comment": "must be a string of at most 2000 characters",
    "starts_at": "must be an RFC 3339 timestamp with offset",
    "ends_at": "must be an RFC 3339 timestamp with offset",
}


def _parse(body: dict[str, Any], now: datetime) -> SilenceSpec:
    """The SilenceInput contract, then what a type cannot say: each regex one RE2 runs,
    the times in range, the duration's, and ends after starts."""
    values, errors = field_values(SilenceInput, body, _MESSAGES)
    matchers = check_matchers(matchers_of(values.get("matchers")), "matchers", errors)
    if not matchers and not any(k.startswith("matchers") for k in errors):
        errors["matchers"] = "required: at least one matcher"
    starts = _time(values, "starts_at", errors) or now
    ends = _time(values, "ends_at", errors)
    if values.get("duration") is not None:
        try:  # ends_at wins, but a duration given must still be one
            seconds = parse_duration(values["duration"])
        except ParseError as exc:
            errors["duration"] = str(exc)
        else:
            ends = ends or starts + timedelta(seconds=seconds)
    if ends is None and "ends_at" not in errors and "duration" not in errors:
        errors["ends_at"] = "required: ends_at or duration"
    if ends is not None and ends <= starts and "ends_at" not in errors:
        errors["ends_at"] = "must be after starts_at"
    author = values.get("author", "").strip()
    if not author and "author" not in errors:
        errors["author"] = _MESSAGES["author"]
    if errors:
        raise RuleError(errors)
    assert ends is not None
    docs = [m.to_doc() for m in matchers]
    return SilenceSpec(docs, starts, ends, author, values.get("comment", ""))


def _time(values: dict[str, Any], field: str, errors: dict[str, str]) -> datetime | None:
    if values.get(field) is None:
        return None
    try:
        return parse_time(values[field], field)
    except web.HTTPException:
        errors[field] = _MESSAGES[field]
        return None


def checked(body: Any, now: datetime) -> SilenceSpec:
    """The silence `body` describes; else a 400 with every field's problem."""
    if not isinstance(body, dict):
        fail(400, "body must be a JSON object")
    try:
        return _parse(body, now)
    except RuleError as exc:
        fail(400, "invalid silence", exc.errors)


async def create(repo: SilenceRepo, tenant: str, body: Any, now: datetime) -> Silence:
    return silence_json(await repo.create(tenant, checked(body, now)), now)


def _id(raw: str) -> str:
    return found(parse_uuid(raw), "silence")


async def fetch(repo: SilenceRepo, tenant: str, raw_id: str, now: datetime) -> Silence:
    return silence_json(found(await repo.get(tenant, _id(raw_id)), "silence"), now)


async def replace(repo: SilenceRepo, tenant: str, raw_id: str, body: Any, now: datetime) -> Silence:
    silence_id = _id(raw_id)
    row = await repo.replace(tenant, silence_id, checked(body, now))
    return silence_json(found(row, "silence"), now)


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
    return json_response(Silences([silence_json(r, now) for r in rows]))


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
