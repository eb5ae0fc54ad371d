"""`python -m services.api [serve | migrate | tenant ... | key ... | retention]`.

    serve                                   the HTTP service (the default)
    migrate                                 create the database if missing, apply migrations
    tenant create <id> [--name NAME]        create a tenant; prints its first API key once
    tenant list                             tenants as JSON lines
    tenant settings <id> [--ip-mode full|truncated|none] [--respect-dnt true|false]
                         [--retention-months N|keep]   show or change privacy settings
    key create <tenant> [--label L]         another key for a tenant; printed once
    key list [<tenant>]                     keys as JSON lines (never the secret)
    key revoke <key id>                     revoke a key
    retention [--dry-run]                   drop/delete events past each tenant's retention
    ingest-token create <tenant>            a write token for the ingest's intake routes,
                                            signed with INGEST_TOKEN_KEYS; its last line

The only place that reads the environment. Commands other than `serve` need only
`DATABASE_URL` (and `ingest-token`, `INGEST_TOKEN_KEYS`: the same list the ingest verifies
with; the token itself is not stored, revoke it by removing its key id).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import asyncpg
import msgspec
import orjson

from services.api import privacy, retention
from services.api.app import create_app
from services.api.keys import ApiDeps
from services.api.repos.keys import PgKeyRepo
from services.api.repos.tenants import PgTenantRepo
from services.api.settings import ApiSettings
from services.api.tenants import (
    TenantError,
    list_keys,
    list_tenants,
    new_key,
    new_tenant,
    require_tenant_row,
    revoke_key,
)
from shared.db.migrate import MigrationError, migrate_command
from shared.ids import valid_tenant
from shared.ingest_tokens import KEYS_SETTING, mint_token, parse_keys
from shared.runtime import configuration_error, run_service, service_parser
from shared.selfreport import TENANT as SELF_TENANT
from shared.settings import CommonSettings, SettingsError
from shared.signing import SigningKeys


def _parser() -> argparse.ArgumentParser:
    parser, sub = service_parser("api", "serve the HTTP api")

    tenant = sub.add_parser("tenant", help="create, list or configure tenants")
    tsub = tenant.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a tenant and print its first api key")
    create.add_argument("id")
    create.add_argument("--name", default="")
    tsub.add_parser("list", help="tenants as JSON lines")
    conf = tsub.add_parser("settings", help="show or change a tenant's privacy settings")
    conf.add_argument("id")
    conf.add_argument("--ip-mode", choices=privacy.IP_MODES)
    conf.add_argument("--respect-dnt", choices=("true", "false"))
    conf.add_argument("--retention-months", help="months to keep events, or 'keep'")

    key = sub.add_parser("key", help="create, list or revoke api keys")
    ksub = key.add_subparsers(dest="action", required=True)
    kcreate = ksub.add_parser("create", help="a new key for a tenant, printed once")
    kcreate.add_argument("tenant")
    kcreate.add_argument("--label", default="")
    klist = ksub.add_parser("list", help="keys as JSON lines")
    klist.add_argument("tenant", nargs="?")
    krevoke = ksub.add_parser("revoke", help="revoke a key by its id")
    krevoke.add_argument("key_id")

    token = sub.add_parser("ingest-token", help="mint ingest write tokens")
    itsub = token.add_subparsers(dest="action", required=True)
    itcreate = itsub.add_parser("create", help="a token writing for one tenant, printed once")
    itcreate.add_argument("tenant")

    ret = sub.add_parser("retention", help="enforce each tenant's retention_months")
    ret.add_argument("--dry-run", action="store_true", help="print what would be done")
    return parser


def _settings_change(args: argparse.Namespace) -> dict[str, Any]:
    change: dict[str, Any] = {}
    if args.ip_mode is not None:
        change["ip_mode"] = args.ip_mode
    if args.respect_dnt is not None:
        change["respect_dnt"] = args.respect_dnt == "true"
    if args.retention_months is not None:
        raw = args.retention_months.strip().lower()
        if raw in ("keep", "none", "null"):
            change["retention_months"] = None
        else:
            try:
                change["retention_months"] = int(raw)
            except ValueError:
                raise TenantError("--retention-months takes a number of months or 'keep'") from None
    return privacy.validate_update(change)


def _line(out: TextIO, doc: Any) -> None:
    out.write(orjson.dumps(doc, default=str).decode() + "\n")


async def command(
    args: argparse.Namespace,
    database_url: str,
    out: TextIO,
    err: TextIO,
    now: datetime | None = None,
    token_keys: SigningKeys | None = None,
) -> int:
    """Run one management command against the database; the exit status."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        if args.command == "tenant":
            return await _tenant(conn, args, out, err)
        if args.command == "key":
            return await _key(conn, args, out, err)
        if args.command == "ingest-token":
            return await _ingest_token(conn, args.tenant, token_keys, out, err)
        lines = await retention.run(conn, now or datetime.now(UTC), dry_run=args.dry_run)
        for line in lines:
            out.write(("dry run: " if args.dry_run else "") + line + "\n")
        return 0
    finally:
        await conn.close()


async def _tenant(
    conn: asyncpg.Connection, args: argparse.Namespace, out: TextIO, err: TextIO
) -> int:
    tenants = PgTenantRepo(conn)
    if args.action == "list":
        for doc in await list_tenants(tenants):
            _line(out, doc)
        return 0
    if not valid_tenant(args.id):
        raise TenantError(f"{args.id!r} is not a valid tenant id ([a-z0-9][a-z0-9_-]{{0,62}})")
    if args.action == "create":
        key = await new_tenant(tenants, args.id, args.name)
        err.write(f"created tenant {args.id}; its api key (shown once, store it now):\n")
        out.write(key + "\n")
        return 0
    change = _settings_change(args)
    if change:
        settings = await privacy.change(tenants, args.id, change)
    else:
        settings = await privacy.settings_of(tenants, args.id)
    if settings is None:
        raise TenantError(f"no tenant {args.id!r} (create it with `tenant create`)")
    _line(out, msgspec.to_builtins(settings))
    return 0


async def _key(conn: asyncpg.Connection, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    keys = PgKeyRepo(conn)
    if args.action == "create":
        key = await new_key(PgTenantRepo(conn), keys, args.tenant, args.label)
        err.write(f"new api key for tenant {args.tenant} (shown once, store it now):\n")
        out.write(key + "\n")
        return 0
    if args.action == "list":
        for doc in await list_keys(keys, args.tenant):
            _line(out, doc)
        return 0
    await revoke_key(keys, args.key_id)
    out.write(f"revoked key {args.key_id}\n")
    return 0


async def _ingest_token(
    conn: asyncpg.Connection, tenant: str, keys: SigningKeys | None, out: TextIO, err: TextIO
) -> int:
    if keys is None:
        raise TenantError(f"{KEYS_SETTING} is unset: it holds the keys that sign ingest tokens")
    if tenant == SELF_TENANT:
        raise TenantError(f"tenant {SELF_TENANT!r} is Belfry's own: nothing writes it from outside")
    await require_tenant_row(PgTenantRepo(conn), tenant)
    token = mint_token(keys, tenant)
    err.write(
        f"ingest token for tenant {tenant} (key {keys.active}; shown once, store it now;"
        f" send it as Authorization: Bearer <token>):\n"
    )
    out.write(token + "\n")
    return 0


def _argument_problem(argv: list[str]) -> str | None:
    """Why an argument cannot reach Postgres text (a NUL, or bytes that are not UTF-8,
    which Python hands over as lone surrogates), or None."""
    for arg in argv:
        if "\x00" in arg:
            return f"argument {arg!r} contains a NUL character"
        try:
            arg.encode()
        except UnicodeEncodeError:
            return f"argument {arg!r} is not valid UTF-8"
    return None


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    problem = _argument_problem(argv)
    if problem:
        print(f"api: {problem}", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    if args.command in ("tenant", "key", "retention", "migrate", "ingest-token"):
        try:
            common = CommonSettings.from_env("api", environ)
            # Only the command that signs reads the key list: a bad one stops nothing else.
            minting = args.command == "ingest-token"
            token_keys = parse_keys(environ.get(KEYS_SETTING, "")) if minting else None
        except SettingsError as exc:
            return configuration_error("api", exc)
        try:
            if args.command == "migrate":
                return migrate_command("api", common.database_url, sys.stdout, sys.stderr)
            return asyncio.run(
                command(args, common.database_url, sys.stdout, sys.stderr, token_keys=token_keys)
            )
        except (TenantError, privacy.SettingsInvalid) as exc:
            print(f"api: {exc}", file=sys.stderr)
            return 1
        except (MigrationError, OSError, asyncpg.PostgresError) as exc:
            print(f"api: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return run_service(
        "api",
        ApiSettings.from_env,
        lambda settings, provider: create_app(settings, ApiDeps(tracer_provider=provider)),
        environ,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
