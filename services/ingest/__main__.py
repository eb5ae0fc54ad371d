"""`python -m services.ingest [serve]`: run the ingest service (the only place that reads env).

With INGEST_WORKERS=N > 1 this process becomes a supervisor of N workers that share
the port through SO_REUSEPORT, each with its own spool directory (`worker-<i>`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

from services.ingest.app import create_app
from services.ingest.keys import IngestDeps
from services.ingest.settings import IngestSettings
from services.ingest.spool import SpoolError
from shared.runtime import run_service
from shared.serve import die_with_parent_hook

WORKER_ENV = "BELFRY_INGEST_WORKER"  # set by the supervisor on each worker: its index


def _settings(environ: Mapping[str, str]) -> IngestSettings:
    """The settings; a worker spools to a directory of its own (`worker-<i>`)."""
    settings = IngestSettings.from_env(environ)
    worker = environ.get(WORKER_ENV)
    if worker is None:
        return settings
    return dataclasses.replace(settings, spool_dir=settings.spool_dir / f"worker-{worker}")


def _supervise(settings: IngestSettings) -> int | None:
    """With INGEST_WORKERS > 1: start N workers, forward SIGTERM/SIGINT, exit when all
    have (the worst status). None: this process serves itself."""
    if settings.workers <= 1:
        return None
    children = []
    for index in range(settings.workers):
        env = dict(os.environ, INGEST_WORKERS="1", **{WORKER_ENV: str(index)})
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.ingest"],
                env=env,
                preexec_fn=die_with_parent_hook(),  # the supervisor may be killed -9
            )
        )

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.ingest")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the HTTP intake endpoints (default)")
    return parser


def main(argv: list[str]) -> int:
    _parser().parse_args(argv)
    return run_service(
        "ingest",
        _settings,
        lambda settings, provider: create_app(settings, IngestDeps(tracer_provider=provider)),
        os.environ,
        delegate=_supervise,
        reuse_port=WORKER_ENV in os.environ,
        fatal=(SpoolError,),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
