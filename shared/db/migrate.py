"""Forward-only, numbered SQL migrations (`migrations/NNNN_name.sql`).

Each file runs once, in its own transaction, and is recorded in `schema_migrations`.
An advisory lock lets several services start at once without racing. A file that was
applied and later edited is refused (checksum), because a changed migration means two
databases that claim the same version but differ.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import asyncpg

log = logging.getLogger("belfry.migrate")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x62656C66  # "belf"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migrations share a version number")
    return found


async def apply_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for mig in load_migrations(directory):
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            log.info("migration applied", extra={"version": mig.version, "migration": mig.name})
            applied_now.append(mig.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it is missing; True if it was created."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise MigrationError(f"database name must be letters, digits and '_': {name!r}")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


async def migrate_url(url: str, create: bool = True) -> list[int]:
    if create:
        await ensure_database(url)
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


def migrate_command(service: str, database_url: str, out: TextIO, err: TextIO) -> int:
    """`python -m <service> migrate` and `python -m shared.db migrate`, one policy: create
    the database if missing and apply pending migrations; 0 when done (or nothing was
    pending), 1 when a migration failed or Postgres cannot be reached, with one line
    saying which. (A bad setting is 2, from the caller's settings parsing.)"""
    try:
        applied = asyncio.run(migrate_url(database_url))
    except MigrationError as exc:
        print(f"{service}: migrate failed: {exc}", file=err)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"{service}: migrate failed: cannot reach Postgres: {exc}", file=err)
        return 1
    print(
        f"{service}: applied migrations {applied}" if applied else f"{service}: up to date",
        file=out,
    )
    return 0
