"""`python -m services.ingest`: run the ingest service (the only place that reads env).

With INGEST_WORKERS=N > 1 this process becomes a supervisor of N workers that share
the port through SO_REUSEPORT, each with its own spool directory (`worker-<i>`).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

from services.ingest.app import create_app
from services.ingest.keys import IngestDeps
from services.ingest.settings import IngestSettings
from shared.httpserver import HttpLimits
from shared.jsonlog import setup_logging
from shared.serve import die_with_parent_hook, run, serve
from shared.settings import SettingsError
from shared.spool import SpoolError
from shared.telemetry import build_tracer_provider


def _supervise(settings: IngestSettings) -> int:
    """Start N workers, forward SIGTERM/SIGINT, exit when all have."""
    children = []
    for index in range(settings.workers):
        env = dict(os.environ, INGEST_WORKERS="1", BELFRY_INGEST_WORKER=str(index))
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


def main() -> int:
    try:
        settings = IngestSettings.from_env(os.environ)
        common = settings.common
        provider = build_tracer_provider("ingest", common.version, common.environment, os.environ)
    except SettingsError as exc:
        print(f"ingest: configuration error: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        return _supervise(settings)
    worker = os.environ.get("BELFRY_INGEST_WORKER")
    if worker is not None:
        settings = dataclasses.replace(settings, spool_dir=settings.spool_dir / f"worker-{worker}")
    setup_logging("ingest", settings.common.log_level)
    app = create_app(settings, IngestDeps(tracer_provider=provider))
    try:
        run(
            serve(
                app,
                settings.host,
                settings.port,
                shutdown_grace=settings.common.shutdown_grace,
                reuse_port=worker is not None,
                limits=HttpLimits.of(settings.common),
            )
        )
    except SpoolError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    finally:
        if provider is not None:
            provider.shutdown()  # flush the last spans
    return 0


if __name__ == "__main__":
    sys.exit(main())
