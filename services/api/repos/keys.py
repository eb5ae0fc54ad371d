"""API keys (`api_keys`): create, list, revoke, and the tenant a key belongs to.

The SQL lives in shared/auth.py, shared by every service with a management API (one key
works on the api and alerting); this is the api's view of it behind a Protocol.
"""

from __future__ import annotations

from typing import Protocol

from services.api.repos import Conn
from shared.auth import KeyInfo, create_key, list_keys, revoke_key, tenant_for_key


class KeyRepo(Protocol):
    async def create(self, tenant: str, label: str) -> str: ...
    async def of_tenant(self, tenant: str | None) -> list[KeyInfo]: ...
    async def revoke(self, key_id: str) -> bool: ...
    async def tenant_of(self, key: str) -> str | None: ...


class PgKeyRepo:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def create(self, tenant: str, label: str) -> str:
        """A new key for `tenant`: the full key, the only time it exists."""
        return await create_key(self._conn, tenant, label)

    async def of_tenant(self, tenant: str | None) -> list[KeyInfo]:
        """Every key (of one tenant, or of all), never the secret."""
        return await list_keys(self._conn, tenant)

    async def revoke(self, key_id: str) -> bool:
        return await revoke_key(self._conn, key_id)

    async def tenant_of(self, key: str) -> str | None:
        return await tenant_for_key(self._conn, key)
