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
from shared.runtime import configuration_error, run_service, service_parser
from shared.settings import CommonSettings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser, sub = service_parser("writer", "consume hits and store them")
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
    if args.command in (None, "serve"):
        return run_service(
            "writer",
            WriterSettings.from_env,
            lambda settings, provider: create_app(settings, WriterDeps(tracer_provider=provider)),
            os.environ,
        )
    try:
        common = WriterSettings.from_env(os.environ).common
    except SettingsError as exc:
        return configuration_error("writer", exc)
    if args.command == "migrate":
        return migrate_command("writer", common.database_url, sys.stdout, sys.stderr)
    return _dlq(args, common)


def _dlq(args: argparse.Namespace, common: CommonSettings) -> int:
    """`dlq list|replay|purge`: the writer's dead letters."""
    if args.action == "list":
        rows = asyncio.run(dlq.list_dead_letters(common.amqp_url, common.prefix, args.limit or 100))
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
