"""`GET /{tenant}/stats?from=&to=&bucket=hour|day&email_id=`: the tenant's figures as
JSON (definitions in services.api.queries and the README)."""

from __future__ import annotations

import time

from aiohttp import web

from services.api.access import authorize, pool
from services.api.http import bad_request, json_response
from services.api.keys import DEPS, METRICS, SETTINGS
from services.api.queries import tenant_stats
from services.api.timerange import parse_scope


async def stats(request: web.Request) -> web.Response:
    # Read-only figures the dashboard shows: open in Little Bell's migration mode too.
    tenant = await authorize(request, little_bell=True)
    scope, errors = parse_scope(request.query, request.app[DEPS].now())
    if scope is None:
        raise bad_request("invalid query", errors)
    started = time.perf_counter()
    db = await pool(request)
    async with db.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        # One snapshot: the figures of one answer agree with each other.
        # No JIT: the edge subqueries' estimates make it compile for ~0.3 s a query that
        # runs in tens of ms; custom plans: the ranges decide which partitions and rows.
        await conn.execute("SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan")
        body = await tenant_stats(conn, tenant, scope, request.app[SETTINGS].top_links)
    request.app[METRICS].stats_seconds.observe(time.perf_counter() - started)
    return json_response(body)
