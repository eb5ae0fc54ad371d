"""`GET /{tenant}/stats?from=&to=&bucket=hour|day&email_id=`: the tenant's figures as
JSON (definitions in services.api.queries and the README)."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from services.api.access import authorize, pool
from services.api.contracts_answers import Stats
from services.api.http import bad_request, json_response
from services.api.keys import DEPS, METRICS, SETTINGS
from services.api.queries import stats_snapshot
from services.api.timerange import parse_scope


async def stats(request: web.Request) -> web.Response:
    # Read-only figures the dashboard shows: open in Little Bell's migration mode too.
    tenant = await authorize(request, little_bell=True)
    scope, errors = parse_scope(request.query, request.app[DEPS].now())
    if scope is None:
        raise bad_request("invalid query", errors)
    started = time.perf_counter()
    body = await stats_snapshot(await pool(request), tenant, scope, request.app[SETTINGS].top_links)
    request.app[METRICS].stats_seconds.observe(time.perf_counter() - started)
    return json_response(msgspec.convert(body, Stats))  # the documented contract, checked
