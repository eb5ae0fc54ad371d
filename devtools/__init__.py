"""Belfry's development tooling, one implementation for `make run`, `make bench` and the
tests: child processes (start, stop the whole group), readiness, free ports and process
CPU/RSS (psutil). `devtools.run` is `make run` itself (scripts/run.py is its entry).

Not part of the deployed services: nothing in services/ or shared/ imports it. Scripts
run as files put the repository root on sys.path first (see scripts/run.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def describe(exc: BaseException) -> str:
    """An exception as one short line: its message, or its type when it has none."""
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
