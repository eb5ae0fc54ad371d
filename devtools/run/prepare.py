"""What `make run` sets up before the services start: the database (created, migrated),
the broker topology, the dev tenants with a working API key each (kept in var/), and
Belfry's own channel `belfry-ops`."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aio_pika
import asyncpg

from devtools import describe
from devtools.run.config import (
    DEV_API_KEYS_FILE,
    DEV_TENANTS,
    OPS_CHANNEL,
    OPS_CHANNEL_TYPE,
    OPS_TENANT,
)
from devtools.run.fatal import Fatal
from shared.auth import create_key, tenant_for_key
from shared.db.migrate import MigrationError, ensure_database, migrate_url
from shared.settings import CommonSettings, redact_url
from shared.topology import Topology, declare_all


async def prepare(common: CommonSettings) -> tuple[str, str]:
    """Database + migrations and broker topology; returns a line on each for the log."""
    try:
        created = await ensure_database(common.database_url)
        applied = await migrate_url(common.database_url, create=False)
    except (MigrationError, asyncpg.PostgresError, OSError) as exc:
        raise Fatal(
            f"migrating {redact_url(common.database_url)} failed: {describe(exc)}"
        ) from None
    name = urlsplit(common.database_url).path.lstrip("/")
    db_line = f"database {name}{' created' if created else ''}, " + (
        f"migrations {applied} applied" if applied else "migrations up to date"
    )
    topo = Topology(common.prefix)
    try:
        conn = await aio_pika.connect(common.amqp_url, timeout=5)
        async with conn:
            await declare_all(await conn.channel(), topo)
    except Exception as exc:  # e.g. PRECONDITION_FAILED: a queue exists with other arguments
        raise Fatal(
            f"declaring the topology under prefix {common.prefix!r} failed: {describe(exc)}"
        ) from None
    return (
        db_line,
        f"topology under prefix {topo.prefix!r} declared ({len(topo.spec().queues)} queues)",
    )


async def dev_api_keys(database_url: str) -> tuple[tuple[str, str], ...]:
    """A working API key per dev tenant: the one in DEV_API_KEYS_FILE while the database
    still knows it, else the tenant (if missing) and a new key, written back."""
    try:
        saved = json.loads(DEV_API_KEYS_FILE.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    keys: dict[str, str] = {}
    try:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            for tenant in DEV_TENANTS:
                key = saved.get(tenant)
                if isinstance(key, str) and await tenant_for_key(conn, key) == tenant:
                    keys[tenant] = key
                    continue
                await conn.execute(
                    "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    tenant,
                    f"{tenant} (make run)",
                )
                keys[tenant] = await create_key(conn, tenant, "make run dev key")
        finally:
            await conn.close()
    except (asyncpg.PostgresError, OSError) as exc:
        raise Fatal(f"creating the dev tenants failed: {describe(exc)}") from None
    if keys != saved:
        DEV_API_KEYS_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = DEV_API_KEYS_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(keys, indent=1) + "\n")
        tmp.chmod(0o600)
        tmp.replace(DEV_API_KEYS_FILE)
    return tuple(keys.items())


async def ops_channel(database_url: str) -> str:
    """The type of the belfry tenant's `belfry-ops`, created as a `log` channel when
    missing. Never replaced: an operator who pointed it elsewhere (API, or
    ALERTING_CHANNELS_FILE) keeps that."""
    try:
        conn = await asyncpg.connect(database_url, timeout=5)
        try:
            await conn.execute(
                "INSERT INTO alert_channels (tenant_id, name, type, config)"
                " VALUES ($1, $2, $3, '{}') ON CONFLICT DO NOTHING",
                OPS_TENANT,
                OPS_CHANNEL,
                OPS_CHANNEL_TYPE,
            )
            kind = await conn.fetchval(
                "SELECT type FROM alert_channels WHERE tenant_id = $1 AND name = $2",
                OPS_TENANT,
                OPS_CHANNEL,
            )
        finally:
            await conn.close()
    except (asyncpg.PostgresError, OSError) as exc:
        raise Fatal(f"creating the channel {OPS_CHANNEL} failed: {describe(exc)}") from None
    return str(kind)
