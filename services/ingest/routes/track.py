"""`POST /v1/track`: a JSON batch of hits from servers and SDKs.

Body: `[{"type": "open"|"click", "tenant", "email_id", "ts"?, "url"?, "ua"?, "ip"?,
"props"?, "hints"?, "id"?}]` (`hints`: {purpose?, dnt?, gpc?}, as in hit v2).
`id` (a UUID, sent with `ts`) makes a retry idempotent: the same id and ts are stored once.

Who may write: `Authorization: Bearer <ingest token>` (shared.ingest_tokens) is required
for the tenants listed in `INGEST_TRACK_REQUIRE_TOKEN` (or all, `*`): without a valid token
a request naming one of them is 401 and nothing is stored. A token that is presented is
always checked, required or not: an invalid one is 401, and a request with any item of
another tenant than the token's is 403 with those item indexes, nothing stored (a token
for A never stores a hit for B). Items may leave `tenant` out when a token is sent.
Too large or too many → 413. Every item is checked; valid ones are published even when
others are not (400 lists the per-item errors, the counts say what was kept). The answer
waits for the broker's confirm or the spool's fsync; with the broker away and the spool
full it is 503 + Retry-After, and nothing of that request was kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
from aiohttp import web
from msgspec import UNSET

from services.ingest.contracts import (
    Accepted,
    ClickHit,
    Error,
    Hit,
    ItemProblem,
    OpenHit,
    PartlyRefused,
    TenantRefusal,
)
from services.ingest.keys import BROKER, HOT, SPOOL
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Outcome
from services.ingest.routes.common import (
    error,
    token_tenant,
    typed_response,
    unauthorized,
)
from services.ingest.settings import IngestSettings
from shared.contracts import (
    HIT_CLICK_V2,
    HIT_OPEN_V2,
    MAX_PURPOSE_LEN,
    MAX_UA_LEN,
    ContractError,
    make_envelope,
    validate_envelope,
)
from shared.decoding import located
from shared.ids import new_event_id
from shared.signing import normalize_target, target_problem

KINDS = {"open": HIT_OPEN_V2, "click": HIT_CLICK_V2}
_FUTURE_SKEW = timedelta(minutes=5)


class ItemError(ContractError):
    """An item does not match the track contract (contracts.Hit); the message is why."""


def _timestamp(raw: str | float, now: datetime, max_age: timedelta) -> datetime:
    if isinstance(raw, float):
        try:
            ts = datetime.fromtimestamp(raw, UTC)
        except (OverflowError, ValueError, OSError):
            raise ItemError("ts is out of range") from None
    else:
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise ItemError("ts is not an RFC 3339 timestamp") from None
        if ts.tzinfo is None:
            raise ItemError("ts must carry a UTC offset")
    if ts > now + _FUTURE_SKEW:
        raise ItemError("ts is in the future")
    if ts < now - max_age:
        raise ItemError(f"ts is older than {max_age.days} days")
    return ts


_FIELDS = frozenset((*ClickHit.__struct_fields__, "type"))  # JSON names: the same
# A field whose value its type refuses (missing, of the wrong type, too long) is reported
# as before the types: the envelope contract's wording for the fields it checks.
_MESSAGES = {
    "": "item must be an object",
    "type": "type must be 'open' or 'click'",
    "tenant": "tenant is required",
    "email_id": "data.email_id is missing or not a valid email id",
    "id": "id must be a UUID",
    "ts": "ts must be an RFC 3339 string or epoch seconds",
    "ua": f"data.ua must be a string of at most {MAX_UA_LEN} characters",
    "ip": "data.ip must be a string of at most 64 characters",
    "props": "data.props must be an object",
    "hints": "data.hints must be an object",
    "hints.purpose": f"data.hints.purpose must be a string of at most {MAX_PURPOSE_LEN}",
    "hints.dnt": "data.hints.dnt must be true or false",
    "hints.gpc": "data.hints.gpc must be true or false",
}
_PROBLEM = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>\w+)`")


def _unknown(fields: Any, known: frozenset[str], prefix: str = "") -> str | None:
    unknown = set(fields) - known
    return f"{prefix}unknown fields: {', '.join(sorted(map(str, unknown)))}" if unknown else None


def _problem(item: Any, exc: msgspec.ValidationError) -> str:
    """Today's reason for the item msgspec refused (unknown fields first, as before)."""
    if not isinstance(item, dict):
        return _MESSAGES[""]
    if isinstance(item.get("type"), str) and item["type"] in KINDS:
        unknown = _unknown(item, _FIELDS)
        if unknown:
            return unknown
    where, problem = located(str(exc))
    where = where.lstrip(".")
    if where == "hints" and "unknown field" in problem:
        hints = _unknown(item["hints"], frozenset(("purpose", "dnt", "gpc")), "data.hints has ")
        return (hints or problem)[:120]
    named = _PROBLEM.match(problem)
    if named:  # "Object missing required field `email_id`"
        where = f"{where}.{named['field']}".lstrip(".")
    if where == "url":
        return "url is only for clicks" if item["type"] == "open" else "url is required for a click"
    return _MESSAGES.get(where, problem)


_BY_TYPE: dict[Any, type[OpenHit | ClickHit]] = {"open": OpenHit, "click": ClickHit}


def decode_hit(item: Any) -> Hit:
    """One request item as its contract type, or ItemError with the reason."""
    # The concrete type when the tag names one: msgspec converts to a Struct type from
    # its cached plan, to the union only after working it out again (15x the cost).
    kind = item.get("type") if isinstance(item, dict) else None
    try:
        return msgspec.convert(item, _BY_TYPE.get(kind, Hit) if isinstance(kind, str) else Hit)
    except msgspec.ValidationError as exc:
        raise ItemError(_problem(item, exc)) from None


def _event_id(hit: Hit) -> str:
    if hit.id is UNSET or hit.id is None:
        if hit.id is None and hit.ts is None:
            # Rows are unique on (id, occurred_at): a retry is the same event only if both match.
            raise ItemError("ts is required when id is given")
        return new_event_id()
    try:
        event_id = str(uuid.UUID(hit.id))
    except ValueError:
        raise ItemError("id must be a UUID") from None
    if hit.ts is None:
        raise ItemError("ts is required when id is given")
    return event_id


def build_item(item: Any, now: datetime, max_age: timedelta) -> dict[str, Any]:
    """One request item → one envelope; raises ItemError/ContractError with the reason."""
    hit = decode_hit(item)
    event_id = _event_id(hit)
    occurred = _timestamp(hit.ts, now, max_age) if hit.ts is not None else now
    url = None
    if isinstance(hit, ClickHit):
        problem = target_problem(hit.url)
        if problem:
            raise ItemError(problem)
        url = normalize_target(hit.url)  # the one spelling signed links carry
    data: dict[str, Any] = {"email_id": hit.email_id}
    if hit.ua is not None:
        data["ua"] = hit.ua
    if hit.ip is not None:
        try:
            data["ip"] = str(ipaddress.ip_address(hit.ip))
        except ValueError:
            raise ItemError("ip is not an IP address") from None
    if hit.props is not None:
        data["props"] = hit.props
    if url is not None:
        data["url"] = url
    if hit.hints is not None:
        data["hints"] = item["hints"]  # as sent: the type checked its shape
    if hit.tenant is UNSET:
        raise ItemError("tenant is required")
    kind = HIT_CLICK_V2 if url is not None else HIT_OPEN_V2
    received = now.isoformat()
    envelope = make_envelope(event_id, kind, hit.tenant, occurred.isoformat(), received, data)
    validate_envelope(envelope)  # the same contract check the writer applies
    return envelope


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (read no further)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


_MISSING_TOKEN = "this tenant requires Authorization: Bearer <ingest token>"


def _authorize(
    items: list[Any], token: str | None, settings: IngestSettings, metrics: IngestMetrics
) -> tuple[list[Any], web.Response | None]:
    """The items with the token's tenant filled in, or the 401/403 that refuses them all."""
    if token is None:
        required = settings.track_require_token
        if any(isinstance(i, dict) and i.get("tenant") in required for i in items):
            metrics.rejected.labels("unauthenticated").inc(len(items))
            return items, unauthorized(_MISSING_TOKEN)
        return items, None
    items = [
        {**i, "tenant": token} if isinstance(i, dict) and "tenant" not in i else i for i in items
    ]
    others = [n for n, i in enumerate(items) if isinstance(i, dict) and i["tenant"] != token]
    if others:
        metrics.rejected.labels("other_tenant").inc(len(items))
        reason = f"the ingest token writes for tenant {token!r} only"
        return items, typed_response(TenantRefusal(reason, others[:100]), 403)
    return items, None


async def track(request: web.Request) -> web.Response:
    hot = request.app[HOT]
    settings = hot.settings
    token = token_tenant(request, settings.token_keys)
    if isinstance(token, web.Response):
        return token
    if token is None and settings.track_require_token.every:
        return unauthorized(_MISSING_TOKEN)  # before reading the body
    body = await _read_body(request, settings.track_max_bytes)
    if body is None:
        return error(413, f"body larger than {settings.track_max_bytes} bytes")
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error(400, f"body is not JSON: {exc}")
    if not isinstance(items, list):
        return error(400, "body must be a JSON array of hits")
    if len(items) > settings.track_max_items:
        return error(413, f"more than {settings.track_max_items} hits in one request")
    if not items:
        return error(400, "no hits in the request")
    items, refusal = _authorize(items, token, settings, hot.metrics)
    if refusal is not None:
        return refusal
    spool, broker = request.app[SPOOL], request.app[BROKER]
    if not broker.available and spool.full:
        return _unavailable(settings.retry_after_seconds)

    now = hot.clock()
    max_age = timedelta(days=settings.track_max_age_days)
    envelopes, errors = [], []
    for index, item in enumerate(items):
        try:
            envelopes.append(build_item(item, now, max_age))
        except ContractError as exc:  # ItemError too
            errors.append(ItemProblem(index, str(exc)))
    futures = hot.publisher.submit_many(envelopes)
    outcomes = await asyncio.gather(*dict.fromkeys(futures))
    if Outcome.DROPPED in outcomes:
        # Part of the request may have been kept: clients retry with the same ids,
        # which the writer stores once.
        hot.metrics.rejected.labels("spool_full").inc(len(envelopes))
        return _unavailable(settings.retry_after_seconds)
    for env, fut in zip(envelopes, futures, strict=True):
        hot.metrics.event(env["type"].split(".")[1], fut.result()).inc()
    hot.metrics.rejected.labels("invalid").inc(len(errors))
    if errors:
        return typed_response(PartlyRefused(len(envelopes), len(errors), errors), 400)
    return typed_response(Accepted(len(envelopes), 0), 202)


def _unavailable(retry_after: int) -> web.Response:
    reason = Error("temporarily unable to store hits; retry later")
    return typed_response(reason, 503, {"Retry-After": str(retry_after)})
