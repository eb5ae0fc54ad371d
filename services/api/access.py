"""Who may see a tenant's routes.

Every `/{tenant}/...` route needs `Authorization: Bearer <api key>` of that tenant
(shared.auth). A key of another tenant gets the same 404 as a tenant that does not
exist, so a key cannot even learn which other tenants there are. With
`API_LITTLE_BELL_OPEN=true` the Little Bell routes (create email, click URL, and the
read-only figures the dashboard shows) also answer without a key, as Little Bell did,
for registered tenants only; a key that is sent is still checked.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from services.api.http import not_found
from services.api.keys import DATABASE, METRICS, SETTINGS
from services.api.repos.tenants import PgTenantRepo
from shared.auth import bearer_token, require_tenant
from shared.ids import valid_tenant


async def pool(request: web.Request) -> asyncpg.Pool:
    return await request.app[DATABASE].pool()


async def authorize(request: web.Request, *, little_bell: bool = False) -> str:
    """The path's tenant once the request may act for it; raises 401 or 404."""
    tenant = request.match_info["tenant"]
    if not valid_tenant(tenant):
        raise not_found("unknown tenant")
    db = await pool(request)
    if little_bell and request.app[SETTINGS].little_bell_open and bearer_token(request) is None:
        if not await PgTenantRepo(db).exists(tenant):
            raise not_found("unknown tenant")
        return tenant
    try:
        key_tenant = await require_tenant(request, db)
    except web.HTTPUnauthorized:
        request.app[METRICS].unauthenticated.inc()
        raise
    if key_tenant != tenant:
        request.app[METRICS].other_tenant.inc()
        raise not_found("unknown tenant")
    return tenant
