"""The notification log API (bearer token; a token sees its own tenant only, anything
else is a 404):

- `GET /api/v1/notifications?status=&channel=&rule=&since=&until=&limit=`
- `GET /api/v1/notifications/{id}`: one notification with its attempts
- `POST /api/v1/notifications/{id}/replay`: send a failed one again (202)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from services.alerting.notify.service import NotifyService, ReplayError
from services.alerting.notify.store import STATUSES, Filters
from shared.auth import require_tenant

NOTIFY = web.AppKey("notify", NotifyService)
MAX_LIMIT = 1000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return _json({"error": reason, **extra}, status)


async def _tenant(request: web.Request) -> tuple[NotifyService, str]:
    service = request.app[NOTIFY]
    if service.store is None:
        raise web.HTTPServiceUnavailable(
            text=orjson.dumps({"error": "notification delivery is not running"}).decode(),
            content_type="application/json",
        )
    tenant = await require_tenant(request, await service.store.database.pool())
    return service, tenant


# The bounds of services/alerting/routes/common.py: beyond them Python or asyncpg overflow.
_MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(9000, 1, 1, tzinfo=UTC)


def _timestamp(raw: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None or not _MIN_TIME <= value < _MAX_TIME:
        return None
    return value


def parse_filters(query: Any) -> tuple[Filters | None, dict[str, str]]:
    """Filters from the query string, or the field errors."""
    errors: dict[str, str] = {}
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        errors["status"] = f"must be one of {', '.join(STATUSES)}"
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        raw = query.get(name)
        times[name] = None
        if raw:
            times[name] = _timestamp(raw)
            if times[name] is None:
                errors[name] = "must be an RFC 3339 timestamp with a UTC offset, 1970 to 9000"
    limit = 100
    raw_limit = query.get("limit")
    if raw_limit:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            errors["limit"] = f"must be an integer between 1 and {MAX_LIMIT}"
        else:
            limit = int(raw_limit)
    if errors:
        return None, errors
    return (
        Filters(
            status=status,
            channel=query.get("channel") or None,
            rule=query.get("rule") or None,
            since=times["since"],
            until=times["until"],
            limit=limit,
        ),
        {},
    )


def _notification_id(request: web.Request) -> str | None:
    raw = request.match_info["notification_id"]
    try:
        return str(uuid.UUID(raw)) if len(raw) == 36 else None
    except ValueError:
        return None


async def list_notifications(request: web.Request) -> web.Response:
    service, tenant = await _tenant(request)
    filters, errors = parse_filters(request.query)
    if filters is None:
        return _error(400, "invalid query parameters", fields=errors)
    assert service.store is not None
    items = await service.store.list(tenant, filters)
    return _json({"notifications": items, "count": len(items)})


async def get_notification(request: web.Request) -> web.Response:
    service, tenant = await _tenant(request)
    nid = _notification_id(request)
    assert service.store is not None
    found = await service.store.get(tenant, nid) if nid else None
    if found is None:
        return _error(404, "notification not found")
    return _json(found)


async def replay_notification(request: web.Request) -> web.Response:
    service, tenant = await _tenant(request)
    nid = _notification_id(request)
    if nid is None:
        return _error(404, "notification not found")
    try:
        await service.replay(tenant, nid)
    except ReplayError as exc:
        return _error(exc.status, exc.reason)
    return _json({"notification_id": nid, "status": "pending"}, 202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/notifications", list_notifications)
    app.router.add_get("/api/v1/notifications/{notification_id}", get_notification)
    app.router.add_post("/api/v1/notifications/{notification_id}/replay", replay_notification)
