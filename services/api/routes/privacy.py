"""`GET /{tenant}/settings` and `PUT /{tenant}/settings`: the tenant's privacy settings
(services.api.privacy). PUT takes the fields to change and answers the settings in force."""

from __future__ import annotations

import asyncpg
import orjson
from aiohttp import web

from services.api import privacy
from services.api.access import authorize, pool
from services.api.http import bad_request, json_response, not_found, read_json


async def load(conn: asyncpg.Pool | asyncpg.Connection, tenant: str) -> dict[str, object] | None:
    """The tenant's stored settings document; None when the tenant does not exist."""
    raw = await conn.fetchval("SELECT settings::text FROM tenants WHERE id = $1", tenant)
    return None if raw is None else dict(orjson.loads(raw))


async def update(
    conn: asyncpg.Connection, tenant: str, change: dict[str, object]
) -> dict[str, object] | None:
    """Apply a validated change under a row lock; the settings in force, or None."""
    async with conn.transaction():
        raw = await conn.fetchval(
            "SELECT settings::text FROM tenants WHERE id = $1 FOR UPDATE", tenant
        )
        if raw is None:
            return None
        doc = privacy.merged(orjson.loads(raw), change)
        await conn.execute(
            "UPDATE tenants SET settings = $2::jsonb WHERE id = $1",
            tenant,
            orjson.dumps(doc).decode(),
        )
    return privacy.effective(doc)


async def get_settings(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    stored = await load(await pool(request), tenant)
    if stored is None:
        raise not_found("unknown tenant")
    return json_response(privacy.effective(stored))


async def put_settings(request: web.Request) -> web.Response:
    tenant = await authorize(request)
    try:
        change = privacy.validate_update(await read_json(request, empty={}))
    except privacy.SettingsInvalid as exc:
        raise bad_request("invalid settings", exc.fields) from None
    db = await pool(request)
    async with db.acquire() as conn:
        settings = await update(conn, tenant, change)
    if settings is None:
        raise not_found("unknown tenant")
    return json_response(settings)
