"""`python -m shared.db migrate`: create the database if missing and apply migrations."""

from __future__ import annotations

import asyncio
import os
import sys

from shared.db.migrate import MigrationError, migrate_url
from shared.settings import CommonSettings, SettingsError


def main(argv: list[str]) -> int:
    if argv[1:] != ["migrate"]:
        print("usage: python -m shared.db migrate", file=sys.stderr)
        return 2
    try:
        settings = CommonSettings.from_env("migrate", os.environ)
        applied = asyncio.run(migrate_url(settings.database_url))
    except (SettingsError, MigrationError) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"migrate: cannot reach Postgres: {exc}", file=sys.stderr)
        return 1
    print(f"migrate: applied {applied}" if applied else "migrate: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
