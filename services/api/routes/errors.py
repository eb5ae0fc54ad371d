"""A tenant's error events, grouped by fingerprint (services/api/repos/errors.py):

- `GET /{tenant}/errors/stats?from=&to=&limit=`: per fingerprint over [from, to) (default
  the last 30 days): count, first/last seen, type, a sample (id + message); the `limit`
  (1..1000, default 100) largest groups by count; the range's totals.
- `GET /{tenant}/errors/fingerprint/{fp}?from=&to=`: one fingerprint's count, first/last
  seen and its latest occurrence (all time unless bounded); 404 if it has none.
- `GET /{tenant}/errors/{id}`: one error; 404 if unknown or another tenant's.

API key of the tenant, as every `/{tenant}/...` route (services/api/access.py).
"""

from __future__ import annotations

import re
from datetime import datetime

from aiohttp import web

from services.api.access import authorize, pool
from services.api.contracts_answers import MAX_GROUPS
from services.api.http import bad_request, json_response, not_found
from services.api.keys import DEPS
from services.api.repos.errors import PgErrorRepo
from services.api.timerange import DEFAULT_SPAN, EARLIEST, parse_bounds
from shared.errors_contract import valid_fingerprint

# Canonical UUID spelling only: anything else can't be an error's id (and Postgres would
# refuse it as a uuid, a 500).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _bounds(request: web.Request) -> tuple[datetime | None, datetime | None, dict[str, str]]:
    start, end, errors = parse_bounds(request.query)
    if start is not None and end is not None and start >= end:
        errors["to"] = "must be after from"
    return start, end, errors


def _limit(raw: str | None, errors: dict[str, str]) -> int:
    try:
        limit = int(raw) if raw else 100
        if 1 <= limit <= MAX_GROUPS:
            return limit
    except ValueError:
        pass
    errors["limit"] = f"must be an integer from 1 to {MAX_GROUPS}"
    return 0


async def stats(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    start, end, errors = _bounds(request)
    limit = _limit(request.query.get("limit"), errors)
    if errors:
        raise bad_request("invalid query", errors)
    if end is None:  # now, or an empty range at a `from` still to come
        end = max(request.app[DEPS].now(), start) if start else request.app[DEPS].now()
    if start is None:  # 30 days before `to`, or as far back as datetime goes
        start = end - DEFAULT_SPAN if end - EARLIEST > DEFAULT_SPAN else EARLIEST
    repo = PgErrorRepo(await pool(request))
    return json_response(await repo.stats(tenant, start, end, limit))


async def by_fingerprint(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    fingerprint = request.match_info["fingerprint"]
    start, end, errors = _bounds(request)
    if errors:
        raise bad_request("invalid query", errors)
    if not valid_fingerprint(fingerprint):
        raise not_found("unknown fingerprint")
    repo = PgErrorRepo(await pool(request))
    body = await repo.fingerprint(tenant, fingerprint, start, end)
    if body is None:
        raise not_found("unknown fingerprint")
    return json_response(body)


async def get_error(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    error_id = request.match_info["error_id"]
    if _UUID.fullmatch(error_id) is None:
        raise not_found("unknown error")
    body = await PgErrorRepo(await pool(request)).one(tenant, error_id)
    if body is None:
        raise not_found("unknown error")
    return json_response(body)
