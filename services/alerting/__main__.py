"""`python -m services.alerting [serve | migrate | rules load FILE | rules check FILE]`.

The only place that reads the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from services.alerting.app import create_app
from services.alerting.files import FileError, load_channels_file, load_rules_file
from services.alerting.keys import AlertingDeps
from services.alerting.settings import AlertingSettings
from services.alerting.store import upsert_rule
from shared.db.migrate import migrate_command
from shared.runtime import configuration_error, run_service, service_parser
from shared.settings import SettingsError


def _parser() -> argparse.ArgumentParser:
    parser, sub = service_parser("alerting", "evaluate rules and serve the API")
    rules = sub.add_parser("rules", help="rule files: check one, or load it into the database")
    rules.add_argument("action", choices=["load", "check"])
    rules.add_argument("file")
    return parser


async def _load(database_url: str, path: str) -> int:
    rules = load_rules_file(path)
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        async with conn.transaction():
            for rule in rules:
                await upsert_rule(conn, rule, source="file")
    finally:
        await conn.close()
    return len(rules)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "rules" and args.action == "check":
        try:
            rules = load_rules_file(args.file)
        except FileError as exc:
            print(f"alerting: {exc}", file=sys.stderr)
            return 1
        print(f"{args.file}: {len(rules)} valid rule(s)")
        return 0
    if args.command in (None, "serve"):
        return run_service(
            "alerting",
            AlertingSettings.from_env,
            lambda settings, provider: create_app(settings, AlertingDeps(tracer_provider=provider)),
            os.environ,
            check=_check_files,
        )
    try:
        database_url = AlertingSettings.from_env(os.environ).common.database_url
    except SettingsError as exc:
        return configuration_error("alerting", exc)
    if args.command == "migrate":
        return migrate_command("alerting", database_url, sys.stdout, sys.stderr)
    try:
        count = asyncio.run(_load(database_url, args.file))
    except FileError as exc:
        print(f"alerting: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"alerting: rules load failed: {exc}", file=sys.stderr)
        return 1
    print(f"loaded {count} rule(s) from {args.file} (a running service picks them up on restart)")
    return 0


def _check_files(settings: AlertingSettings) -> None:
    """Fail fast on a bad rule or channel file, before anything starts."""
    try:
        if settings.rules_file:
            load_rules_file(settings.rules_file)
        if settings.channels_file:
            load_channels_file(settings.channels_file)
    except FileError as exc:
        raise SettingsError(str(exc)) from exc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
