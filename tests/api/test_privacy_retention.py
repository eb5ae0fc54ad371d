"""Per-tenant privacy settings (route and command line) and the retention command:
whole monthly partitions go only when every tenant's retention has passed them, and a
tenant with a shorter retention loses its own older rows from the partitions that stay."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from services.api.__main__ import _parser, command
from services.api.retention import months_before
from shared.auth import list_keys, tenant_for_key
from tests.api.conftest import bearer, new_tenant
from tests.conftest import Started
from tests.support.processes import ROOT

NOW = datetime.now(UTC)


async def test_settings_route_validates_and_merges(
    db: asyncpg.Connection, start_api: Started
) -> None:
    key = await new_tenant(db, "acme")
    api = await start_api()
    resp = await api.get("/acme/settings", headers=bearer(key))
    assert await resp.json() == {"ip_mode": "full", "respect_dnt": True, "retention_months": None}

    resp = await api.put("/acme/settings", json={"ip_mode": "truncated"}, headers=bearer(key))
    assert resp.status == 200
    resp = await api.put("/acme/settings", json={"retention_months": 6}, headers=bearer(key))
    assert await resp.json() == {"ip_mode": "truncated", "respect_dnt": True, "retention_months": 6}
    stored = await db.fetchval("SELECT settings::text FROM tenants WHERE id = 'acme'")
    assert orjson.loads(stored) == {
        "ip_mode": "truncated",
        "retention_months": 6,
    }  # the writer reads it

    for body, field in (
        ({"ip_mode": "hashed"}, "ip_mode"),
        ({"respect_dnt": "yes"}, "respect_dnt"),
        ({"retention_months": 0}, "retention_months"),
        ({"retention_months": True}, "retention_months"),
        ({"colour": "red"}, "colour"),
    ):
        resp = await api.put("/acme/settings", json=body, headers=bearer(key))
        assert resp.status == 400, body
        assert field in (await resp.json())["fields"]
    resp = await api.put("/acme/settings", data=b"[]", headers=bearer(key))
    assert resp.status == 400
    # JSON has one number type: 6.0 is the integer 6 (as JSON Schema's `integer` says).
    resp = await api.put("/acme/settings", json={"retention_months": 6.0}, headers=bearer(key))
    assert resp.status == 200 and (await resp.json())["retention_months"] == 6
    resp = await api.put("/acme/settings", json={"retention_months": None}, headers=bearer(key))
    assert (await resp.json())["retention_months"] is None


async def cli(database_url: str, *argv: str, now: datetime = NOW) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await command(_parser().parse_args(list(argv)), database_url, out, err, now)
    return status, out.getvalue(), err.getvalue()


async def test_tenant_and_key_commands(db: asyncpg.Connection, database_url: str) -> None:
    status, out, err = await cli(database_url, "tenant", "create", "acme", "--name", "Acme")
    key = out.strip()
    assert status == 0 and "shown once" in err
    assert await tenant_for_key(db, key) == "acme"
    stored = await db.fetchval("SELECT key_hash FROM api_keys")
    assert key.encode() not in bytes(stored)

    status, out, _ = await cli(database_url, "tenant", "list")
    (doc,) = [orjson.loads(line) for line in out.splitlines()]
    assert doc["id"] == "acme" and doc["name"] == "Acme" and doc["live_keys"] == 1
    assert doc["settings"]["ip_mode"] == "full"

    status, out, _ = await cli(
        database_url,
        "tenant",
        "settings",
        "acme",
        "--ip-mode",
        "none",
        "--respect-dnt",
        "false",
        "--retention-months",
        "3",
    )
    assert orjson.loads(out) == {"ip_mode": "none", "respect_dnt": False, "retention_months": 3}

    status, out, _ = await cli(database_url, "key", "create", "acme", "--label", "ci")
    second = out.strip()
    assert await tenant_for_key(db, second) == "acme"
    keys = await list_keys(db, "acme")
    ci = next(k for k in keys if k.label == "ci")
    status, out, _ = await cli(database_url, "key", "list", "acme")
    assert second not in out and ci.id in out
    status, out, _ = await cli(database_url, "key", "revoke", ci.id)
    assert status == 0 and await tenant_for_key(db, second) is None
    assert await tenant_for_key(db, key) == "acme"


def test_command_line_process(database_url: str) -> None:
    """The real entry point: exit codes and messages, no traceback."""
    env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.api", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    created = run("tenant", "create", "demo")
    assert created.returncode == 0 and created.stdout.startswith("blf_"), created.stderr
    again = run("tenant", "create", "demo")
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = run("tenant", "settings", "demo", "--retention-months", "many")
    assert bad.returncode == 1 and "retention" in bad.stderr and "Traceback" not in bad.stderr
    missing = run("key", "create", "nobody")
    assert missing.returncode == 1 and "no tenant" in missing.stderr
    dry = run("retention", "--dry-run")
    assert dry.returncode == 0 and "kept every partition" in dry.stdout


async def put_event(db: asyncpg.Connection, tenant: str, at: datetime) -> None:
    await db.execute(
        "INSERT INTO events (id, occurred_at, received_at, tenant_id, email_id, kind)"
        " VALUES ($1, $2, $2, $3, 'e', 'open')",
        uuid.uuid4(),
        at,
        tenant,
    )


async def test_retention_drops_partitions_and_rows(
    db: asyncpg.Connection, database_url: str
) -> None:
    await new_tenant(db, "acme")
    await new_tenant(db, "globex")
    await db.execute(
        """UPDATE tenants SET settings = '{"retention_months": 3}' WHERE id = 'acme'"""
    )
    ages = (1, 5, 13, 20)  # months
    for months in ages:
        await db.fetchval("SELECT belfry_ensure_events_partition($1)", months_before(NOW, months))
    for tenant in ("acme", "globex", "stranger"):  # stranger: hits of an unregistered id
        for months in ages:
            await put_event(db, tenant, months_before(NOW, months) + timedelta(hours=1))
    ancient = datetime(2001, 1, 1, tzinfo=UTC)  # no partition: lands in events_default
    await put_event(db, "globex", ancient)

    def age(at: datetime) -> int:
        return next(m for m in (*ages, 400) if at >= months_before(NOW, m))

    async def left() -> set[tuple[str, int]]:
        """(tenant, age in months) of every stored event."""
        rows = await db.fetch("SELECT tenant_id, occurred_at FROM events")
        return {(r["tenant_id"], age(r["occurred_at"])) for r in rows}

    everything = await left()
    # globex keeps everything: no partition may go; acme loses its rows past 3 months.
    status, out, _ = await cli(database_url, "retention")
    assert status == 0
    assert "dropped partition" not in out and "deleted 3 rows of tenant acme" in out
    assert await left() == everything - {("acme", 5), ("acme", 13), ("acme", 20)}

    await db.execute(
        """UPDATE tenants SET settings = '{"retention_months": 12}' WHERE id = 'globex'"""
    )
    old = months_before(NOW, 20).strftime("events_%Y_%m")
    older = months_before(NOW, 13).strftime("events_%Y_%m")
    before = await left()
    status, out, _ = await cli(database_url, "retention", "--dry-run")
    assert f"would drop partition {old} (2 rows)" in out
    assert f"would drop partition {older}" in out
    assert "would delete 1 rows from events_default" in out
    assert await left() == before  # a dry run changes nothing

    status, out, _ = await cli(database_url, "retention")
    assert f"dropped partition {old}" in out and f"dropped partition {older}" in out
    assert await db.fetchval("SELECT to_regclass($1)", old) is None
    # Every tenant, registered or not, keeps its rows inside the longest retention (12
    # months); acme only its 3.
    assert await left() == {
        ("acme", 1),
        ("globex", 1),
        ("globex", 5),
        ("stranger", 1),
        ("stranger", 5),
    }
    assert await db.fetchval("SELECT count(*) FROM events_default") == 0


async def test_retention_deletes_application_errors_with_the_same_cutoffs(
    db: asyncpg.Connection, database_url: str
) -> None:
    await new_tenant(db, "acme")
    await new_tenant(db, "globex")
    await db.execute(
        """UPDATE tenants SET settings = '{"retention_months": 3}' WHERE id = 'acme'"""
    )
    for tenant in ("acme", "globex", "stranger"):
        for months in (1, 5, 20):
            await db.execute(
                "INSERT INTO errors (id, occurred_at, received_at, tenant_id, fingerprint)"
                " VALUES ($1, $2, $2, $3, 'fp')",
                uuid.uuid4(),
                months_before(NOW, months) + timedelta(hours=1),
                tenant,
            )

    async def left() -> set[tuple[str, int]]:
        rows = await db.fetch("SELECT tenant_id, occurred_at FROM errors")
        return {
            (
                r["tenant_id"],
                next(m for m in (1, 5, 20) if r["occurred_at"] >= months_before(NOW, m)),
            )
            for r in rows
        }

    status, out, _ = await cli(database_url, "retention")  # globex keeps everything
    assert status == 0 and "deleted 2 errors of tenant acme" in out, out
    assert ("acme", 5) not in await left() and ("stranger", 20) in await left()

    await db.execute(
        """UPDATE tenants SET settings = '{"retention_months": 12}' WHERE id = 'globex'"""
    )
    status, out, _ = await cli(database_url, "retention")
    assert status == 0 and "deleted 1 errors of other tenant ids" in out, out
    assert await left() == {
        ("acme", 1),
        ("globex", 1),
        ("globex", 5),
        ("stranger", 1),
        ("stranger", 5),
    }
