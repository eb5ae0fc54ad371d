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
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from services.ingest import metrics
from services.ingest.keys import BROKER, HOT, SPOOL
from services.ingest.publisher import Outcome
from services.ingest.routes.common import error, json_response, token_tenant, unauthorized
from services.ingest.settings import IngestSettings
from shared.contracts import (
    HIT_CLICK_V2,
    HIT_OPEN_V2,
    ContractError,
    make_envelope,
    validate_envelope,
)
from shared.ids import new_event_id
from shared.signing import normalize_target, target_problem

KINDS = {"open": HIT_OPEN_V2, "click": HIT_CLICK_V2}
_FUTURE_SKEW = timedelta(minutes=5)


class ItemError(ValueError):
    pass


def _timestamp(raw: Any, now: datetime, max_age: timedelta) -> datetime:
    if isinstance(raw, bool):
        raise ItemError("ts must be an RFC 3339 string or epoch seconds")
    if isinstance(raw, int | float):
        try:
            ts = datetime.fromtimestamp(raw, UTC)
        except (OverflowError, ValueError, OSError):
            raise ItemError("ts is out of range") from None
    elif isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise ItemError("ts is not an RFC 3339 timestamp") from None
        if ts.tzinfo is None:
            raise ItemError("ts must carry a UTC offset")
    else:
        raise ItemError("ts must be an RFC 3339 string or epoch seconds")
    if ts > now + _FUTURE_SKEW:
        raise ItemError("ts is in the future")
    if ts < now - max_age:
        raise ItemError(f"ts is older than {max_age.days} days")
    return ts


_FIELDS = {"type", "tenant", "email_id", "ts", "url", "ua", "ip", "props", "hints", "id"}


def build_item(item: Any, now: datetime, max_age: timedelta) -> dict[str, Any]:
    """One request item → one envelope; raises ItemError/ContractError with the reason."""
    if not isinstance(item, dict):
        raise ItemError("item must be an object")
    raw_type = item.get("type")
    kind = KINDS.get(raw_type) if isinstance(raw_type, str) else None
    if kind is None:
        raise ItemError("type must be 'open' or 'click'")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ItemError(f"unknown fields: {', '.join(sorted(unknown))}")
    event_id = item.get("id")
    if event_id is None:
        event_id = new_event_id()
    else:
        try:
            event_id = str(uuid.UUID(str(event_id)))
        except ValueError:
            raise ItemError("id must be a UUID") from None
    ts = item.get("ts")
    if ts is None and "id" in item:
        # Rows are unique on (id, occurred_at): a retry is the same event only if both match.
        raise ItemError("ts is required when id is given")
    occurred = _timestamp(ts, now, max_age) if ts is not None else now
    data: dict[str, Any] = {"email_id": item.get("email_id")}
    for key in ("ua", "ip", "props", "url", "hints"):
        if item.get(key) is not None:
            data[key] = item[key]
    if kind == HIT_CLICK_V2:
        url = item.get("url")
        problem = target_problem(url) if isinstance(url, str) else "url is required for a click"
        if problem:
            raise ItemError(problem)
        data["url"] = normalize_target(data["url"])  # the one spelling signed links carry
    elif "url" in data:
        raise ItemError("url is only for clicks")
    if isinstance(data.get("ip"), str):
        try:
            data["ip"] = str(ipaddress.ip_address(data["ip"]))
        except ValueError:
            raise ItemError("ip is not an IP address") from None
    tenant = item.get("tenant")
    if not isinstance(tenant, str):
        raise ItemError("tenant is required")
    envelope = make_envelope(event_id, kind, tenant, occurred.isoformat(), now.isoformat(), data)
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
    items: list[Any], token: str | None, settings: IngestSettings
) -> tuple[list[Any], web.Response | None]:
    """The items with the token's tenant filled in, or the 401/403 that refuses them all."""
    if token is None:
        required = settings.track_require_token
        if any(isinstance(i, dict) and i.get("tenant") in required for i in items):
            metrics.REJECTED.labels("unauthenticated").inc(len(items))
            return items, unauthorized(_MISSING_TOKEN)
        return items, None
    items = [
        {**i, "tenant": token} if isinstance(i, dict) and "tenant" not in i else i for i in items
    ]
    others = [n for n, i in enumerate(items) if isinstance(i, dict) and i["tenant"] != token]
    if others:
        metrics.REJECTED.labels("other_tenant").inc(len(items))
        reason = f"the ingest token writes for tenant {token!r} only"
        return items, error(403, reason, items=others[:100])
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
    items, refusal = _authorize(items, token, settings)
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
        except (ItemError, ContractError) as exc:
            errors.append({"index": index, "error": str(exc)})
    futures = hot.publisher.submit_many(envelopes)
    outcomes = await asyncio.gather(*dict.fromkeys(futures))
    if Outcome.DROPPED in outcomes:
        # Part of the request may have been kept: clients retry with the same ids,
        # which the writer stores once.
        metrics.REJECTED.labels("spool_full").inc(len(envelopes))
        return _unavailable(settings.retry_after_seconds)
    for env, fut in zip(envelopes, futures, strict=True):
        metrics.events(env["type"].split(".")[1], fut.result()).inc()
    metrics.REJECTED.labels("invalid").inc(len(errors))
    answer: dict[str, Any] = {"accepted": len(envelopes), "rejected": len(errors)}
    if errors:
        answer["errors"] = errors
        return json_response(answer, 400)
    return json_response(answer, 202)


def _unavailable(retry_after: int) -> web.Response:
    return json_response(
        {"error": "temporarily unable to store hits; retry later"},
        503,
        headers={"Retry-After": str(retry_after)},
    )
