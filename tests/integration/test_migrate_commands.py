"""Every `migrate` entry point (shared.db and each service's) follows one policy: create
the database if missing and apply what is pending (exit 0, "applied migrations [...]",
then "up to date"), Postgres unreachable → exit 1 with the reason, a bad setting → 2."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import asyncpg
import pytest

from tests.conftest import _db_url
from tests.support.processes import ROOT

COMMANDS = {
    "shared.db": ["-m", "shared.db", "migrate"],
    "alerting": ["-m", "services.alerting", "migrate"],
    "api": ["-m", "services.api", "migrate"],
    "writer": ["-m", "services.writer", "migrate"],
}


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.parametrize("name", COMMANDS)
async def test_one_migrate_policy(name: str) -> None:
    database = f"belfry_migratecmd_{secrets.token_hex(4)}"
    url = _db_url(database)
    try:
        first = _run(COMMANDS[name], DATABASE_URL=url)
        assert first.returncode == 0, first.stderr
        assert "applied migrations [1, 2," in first.stdout
        again = _run(COMMANDS[name], DATABASE_URL=url)
        assert again.returncode == 0 and again.stdout.strip().endswith("up to date")
    finally:
        admin = await asyncpg.connect(_db_url("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    closed = _run(COMMANDS[name], DATABASE_URL="postgresql://postgres@127.0.0.1:1/x")
    assert closed.returncode == 1
    assert "migrate failed: cannot reach Postgres" in closed.stderr
    bad = _run(COMMANDS[name], DATABASE_URL="mysql://nope")
    assert bad.returncode == 2 and "DATABASE_URL" in bad.stderr
