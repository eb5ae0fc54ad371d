"""Tenants and their keys, for the command line (services.api.__main__) and the tests:
the rules around the tenants and keys repositories (services/api/repos/)."""

from __future__ import annotations

from typing import Any

from services.api import privacy
from services.api.repos import Conn
from services.api.repos.keys import KeyRepo
from services.api.repos.tenants import PgTenantRepo, TenantRepo


class TenantError(ValueError):
    """A tenant command cannot be done; the message says why."""


async def new_tenant(tenants: TenantRepo, tenant: str, name: str = "") -> str:
    """Create the tenant and its first API key; returns the key (shown once)."""
    key = await tenants.create(tenant, name, "created with the tenant")
    if key is None:
        raise TenantError(f"tenant {tenant!r} exists already (add a key with `key create`)")
    return key


async def create_tenant(conn: Conn, tenant: str, name: str = "") -> str:
    """`new_tenant` on Postgres (a connection or a pool)."""
    return await new_tenant(PgTenantRepo(conn), tenant, name)


async def require_tenant_row(tenants: TenantRepo, tenant: str) -> None:
    if not await tenants.exists(tenant):
        raise TenantError(f"no tenant {tenant!r} (create it with `tenant create`)")


async def new_key(tenants: TenantRepo, keys: KeyRepo, tenant: str, label: str) -> str:
    """Another key for an existing tenant; returns it (shown once)."""
    await require_tenant_row(tenants, tenant)
    return await keys.create(tenant, label)


async def list_tenants(tenants: TenantRepo) -> list[dict[str, Any]]:
    """Every tenant with its settings in force, live keys and registered emails."""
    return [
        {
            "id": t.id,
            "name": t.name,
            "created_at": t.created_at.isoformat(),
            "settings": privacy.effective(t.settings),
            "live_keys": t.live_keys,
            "emails": t.emails,
        }
        for t in await tenants.all()
    ]


async def list_keys(keys: KeyRepo, tenant: str | None) -> list[dict[str, Any]]:
    """Every key (of one tenant, or all) as the command line prints it: never the secret."""
    return [
        {
            "id": info.id,
            "tenant": info.tenant_id,
            "label": info.label,
            "created_at": info.created_at.isoformat(),
            "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        }
        for info in await keys.of_tenant(tenant)
    ]


async def revoke_key(keys: KeyRepo, key_id: str) -> None:
    if not await keys.revoke(key_id):
        raise TenantError(f"no live key with id {key_id!r}")
