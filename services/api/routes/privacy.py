"""`GET /{tenant}/settings` and `PUT /{tenant}/settings`: the tenant's privacy settings
(services.api.privacy). PUT takes the fields to change and answers the settings in force."""

from __future__ import annotations

from aiohttp import web

from services.api import privacy
from services.api.access import authorize, pool
from services.api.http import bad_request, json_response, not_found, read_json
from services.api.repos.tenants import PgTenantRepo


async def get_settings(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    settings = await privacy.settings_of(PgTenantRepo(await pool(request)), tenant)
    if settings is None:
        raise not_found("unknown tenant")
    return json_response(settings)


async def put_settings(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    try:
        update = privacy.validate_update(await read_json(request, empty={}))
    except privacy.SettingsInvalid as exc:
        raise bad_request("invalid settings", exc.fields) from None
    settings = await privacy.change(PgTenantRepo(await pool(request)), tenant, update)
    if settings is None:
        raise not_found("unknown tenant")
    return json_response(settings)
