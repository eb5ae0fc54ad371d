"""`make run`: the whole Belfry system on this machine, in one terminal (the steps are in
devtools/run/__init__.py: configuration, Postgres and RabbitMQ, database and topology,
the services under a supervisor, the banner)."""

from __future__ import annotations

import sys
from pathlib import Path

# The repo root on sys.path: `devtools` and `shared` import even when the editable
# install is stale (run as a file, only scripts/ would be on it).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.run.banner import banner
from devtools.run.config import (
    DEV_API_KEYS_FILE,
    OPS_CHANNEL,
    OPS_CHANNEL_TYPE,
    Config,
)
from devtools.run.main import run

# What the tests reach through this script (tests/deploy/support.py load_script).
__all__ = ["DEV_API_KEYS_FILE", "OPS_CHANNEL", "OPS_CHANNEL_TYPE", "Config", "banner"]

if __name__ == "__main__":
    sys.exit(run())
