"""Fixtures of the api tests: the api app on a real port (`start_api`, like `start_writer`),
tenants with keys, and raw event rows seeded straight into Postgres (the verdicts the
writer's classifier would have stored)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from services.api.app import create_app
from services.api.keys import ApiDeps
from services.api.settings import ApiSettings
from services.api.tenants import create_tenant
from shared.settings import CommonSettings
from shared.signing import SigningKeys
from tests.conftest import Started


@pytest.fixture
def api_settings(common: CommonSettings, signing: SigningKeys) -> ApiSettings:
    return ApiSettings(
        common=replace(common, service="api"),
        signing=signing,
        public_url="http://tracking.test",
        # The template database is migrated already.
        migrate_on_start=False,
        export_chunk_rows=500,
    )


@pytest.fixture
def start_api(start_app: Any, api_settings: ApiSettings) -> Started:
    async def start(
        settings: ApiSettings | None = None, deps: ApiDeps | None = None, **overrides: Any
    ) -> TestClient:
        s = replace(settings or api_settings, **overrides)
        # No broker unless a test asks for self-reports: most api tests need none.
        client: TestClient = await start_app(create_app(s, deps or ApiDeps(self_report=False)))
        return client

    return start


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_tenant(db: asyncpg.Connection, tenant: str) -> str:
    """Create `tenant`; returns its API key."""
    return await create_tenant(db, tenant, tenant.title())


@dataclass
class Row:
    """One stored event, as the writer (and its classifier) would have left it."""

    tenant: str
    email_id: str
    kind: str
    at: datetime
    verdict: str | None = None
    reason: str | None = None
    url: str | None = None
    ua: str | None = "Mozilla/5.0"
    ip: str | None = "203.0.113.9"


COPY_COLUMNS = (
    "id",
    "occurred_at",
    "received_at",
    "tenant_id",
    "email_id",
    "kind",
    "ip",
    "user_agent",
    "url",
    "verdict",
    "verdict_reason",
)


async def seed_events(db: asyncpg.Connection, rows: Iterable[Row]) -> int:
    records = [
        (
            uuid.uuid4(),
            r.at,
            r.at,
            r.tenant,
            r.email_id,
            r.kind,
            r.ip,
            r.ua,
            r.url,
            r.verdict,
            r.reason,
        )
        for r in rows
    ]
    await db.copy_records_to_table("events", records=records, columns=COPY_COLUMNS)
    return len(records)


async def seed_email(
    db: asyncpg.Connection, tenant: str, email_id: str, created_at: datetime
) -> None:
    await db.execute(
        "INSERT INTO emails (tenant_id, id, created_at) VALUES ($1, $2, $3)",
        tenant,
        email_id,
        created_at,
    )
