"""`python -m services.writer [serve | migrate | dlq list|replay|purge [--limit N]]`.

The only place that reads the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import orjson

from services.writer import dlq
from services.writer.app import create_app
from services.writer.keys import WriterDeps
from services.writer.settings import WriterSettings
from shared.db.migrate import migrate_command
from shared.serve import run_service
from shared.settings import SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.writer")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="consume hits and store them (default)")
    sub.add_parser("migrate", help="create the database if missing and apply migrations")
    dlq_parser = sub.add_parser("dlq", help="dead-letter queue: list, replay or purge")
    dlq_parser.add_argument("action", choices=["list", "replay", "purge"])
    dlq_parser.add_argument(
        "--limit", type=int, default=None, help="list/replay at most N messages"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "dlq" and args.action == "purge" and args.limit is not None:
        parser.error("--limit applies to list and replay; purge empties the whole queue")
    try:
        settings = WriterSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"writer: configuration error: {exc}", file=sys.stderr)
        return 2
    common = settings.common
    if args.command == "migrate":
        return migrate_command("writer", common.database_url, sys.stdout, sys.stderr)
    if args.command == "dlq":
        if args.action == "list":
            rows = asyncio.run(
                dlq.list_dead_letters(common.amqp_url, common.prefix, args.limit or 100)
            )
            for row in rows:
                sys.stdout.write(orjson.dumps(row).decode() + "\n")
            print(f"{len(rows)} dead-lettered message(s)", file=sys.stderr)
        elif args.action == "replay":
            count = asyncio.run(dlq.replay_dead_letters(common.amqp_url, common.prefix, args.limit))
            print(f"replayed {count} message(s)")
        else:
            count = asyncio.run(dlq.purge_dead_letters(common.amqp_url, common.prefix))
            print(f"purged {count} message(s)")
        return 0
    return run_service(
        "writer",
        common,
        settings.host,
        settings.port,
        lambda provider: create_app(settings, WriterDeps(tracer_provider=provider)),
        os.environ,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
