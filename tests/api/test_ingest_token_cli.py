"""`python -m services.api ingest-token create <tenant>`: the token it prints (last line)
is one the ingest verifies (shared.ingest_tokens), for that tenant only."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import asyncpg

from services.api.__main__ import _parser, command, main
from shared.ingest_tokens import verify_token
from shared.signing import SigningKeys
from tests.api.conftest import new_tenant
from tests.support.processes import ROOT

RAW_KEYS = "t1:token-secret-0123456789"
KEYS = SigningKeys.parse(RAW_KEYS, "INGEST_TOKEN_KEYS")


async def mint(
    database_url: str, tenant: str, keys: SigningKeys | None = KEYS
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = _parser().parse_args(["ingest-token", "create", tenant])
    status = await command(args, database_url, out, err, token_keys=keys)
    return status, out.getvalue(), err.getvalue()


async def test_create_prints_a_token_for_the_tenant(
    db: asyncpg.Connection, database_url: str
) -> None:
    await new_tenant(db, "acme")
    status, out, err = await mint(database_url, "acme")
    assert status == 0, err
    token = out.splitlines()[-1]
    assert verify_token(KEYS, token) == "acme"
    assert "Authorization: Bearer" in err


def test_command_line_process(database_url: str) -> None:
    """The real entry point: the token is the last line; errors are one line, no traceback."""

    def run(tenant: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.api", "ingest-token", "create", tenant],
            cwd=ROOT,
            env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert (
        subprocess.run(  # a tenant to mint for, through the same CLI
            [sys.executable, "-m", "services.api", "tenant", "create", "demo"],
            cwd=ROOT,
            env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
        ).returncode
        == 0
    )
    made = run("demo", INGEST_TOKEN_KEYS=RAW_KEYS)
    assert made.returncode == 0, made.stderr
    assert verify_token(KEYS, made.stdout.splitlines()[-1]) == "demo"
    unset = run("demo")
    assert unset.returncode == 1 and "INGEST_TOKEN_KEYS is unset" in unset.stderr
    bad = run("demo", INGEST_TOKEN_KEYS="t1:short")
    assert bad.returncode == 2 and "INGEST_TOKEN_KEYS" in bad.stderr
    nobody = run("nobody", INGEST_TOKEN_KEYS=RAW_KEYS)
    assert nobody.returncode == 1 and "no tenant" in nobody.stderr
    own = run("belfry", INGEST_TOKEN_KEYS=RAW_KEYS)
    assert own.returncode == 1 and "Belfry's own" in own.stderr
    for failed in (unset, bad, nobody, own):
        assert not failed.stdout and "Traceback" not in failed.stderr


def test_arguments_postgres_cannot_hold_are_refused_before_connecting(database_url: str) -> None:
    """Bytes that are not UTF-8 (a lone surrogate once decoded) or a NUL are a usage error
    (2) naming the argument, before any connection; asyncpg answered them with an opaque
    DataError about a query argument."""
    for argv in (
        ["tenant", "create", "demo", "--name", "caf\udce9"],
        ["key", "revoke", "\udcff"],
        ["tenant", "create", "demo", "--name", "a\x00b"],
    ):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(argv, {"DATABASE_URL": database_url}) == 2
        assert "UTF-8" in err.getvalue() or "NUL" in err.getvalue()
