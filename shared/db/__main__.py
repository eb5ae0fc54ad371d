"""`python -m shared.db migrate`: create the database if missing and apply migrations
(the same command, messages and exit codes as every service's `migrate`)."""

from __future__ import annotations

import os
import sys

from shared.db.migrate import migrate_command
from shared.settings import CommonSettings, SettingsError


def main(argv: list[str]) -> int:
    if argv[1:] != ["migrate"]:
        print("usage: python -m shared.db migrate", file=sys.stderr)
        return 2
    try:
        settings = CommonSettings.from_env("migrate", os.environ)
    except SettingsError as exc:
        print(f"migrate: configuration error: {exc}", file=sys.stderr)
        return 2
    return migrate_command("migrate", settings.database_url, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
