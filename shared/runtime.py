"""One `serve` shape for every service: settings → logging → telemetry → app → serve → drain.

Every service's `python -m services.<name>` hands its `serve` command to `run_service`, so
a bad setting, a start-up failure and SIGTERM end the same way everywhere:

- a bad setting (the environment, the tracing configuration, or a service's own check
  such as alerting's rule file) prints one line, `<name>: configuration error: <reason
  naming the variable>`, and exits 2 before anything starts;
- an error the service declares `fatal` while serving (ingest's spool directory held by
  another process) prints `<name>: <reason>` and exits 2;
- SIGTERM/SIGINT drains (`shared.serve.serve`: /readyz 503, SHUTDOWN_GRACE_SECONDS,
  in-flight requests finish, cleanup contexts run), the last spans are flushed, exit 0.

Every service also runs with the same garbage-collector thresholds (`tune_gc`).
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from shared.httpserver import HttpLimits
from shared.jsonlog import setup_logging
from shared.serve import run, serve
from shared.settings import CommonSettings, SettingsError
from shared.telemetry import build_tracer_provider


class ServiceSettings(Protocol):
    """What the runtime reads of a service's settings."""

    @property
    def common(self) -> CommonSettings: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


S = TypeVar("S", bound=ServiceSettings)


# CPython's default (700, 10, 10) runs a young collection every 700 allocations and a full
# one every 70,000: a service holding many long-lived objects (the alerting engine's
# alerts and windows, 65k alerts in bench_tick) then spends a large part of its CPU
# walking them (bench_tick: 2.1 s of GC in 10 ticks; 0.4 s with these thresholds, and
# a tick 165 → 142 ms). Cycles are rare in our code; memory they hold lives a little longer.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


Subcommands = argparse._SubParsersAction  # argparse's own type for add_subparsers()


def service_parser(
    service: str, serve_help: str
) -> tuple[argparse.ArgumentParser, Subcommands[argparse.ArgumentParser]]:
    """`python -m services.<service>` with its `serve` (the default) and `migrate`
    commands; the caller adds its own to the subcommands returned."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help=f"{serve_help} (default)")
    sub.add_parser("migrate", help="create the database if missing and apply migrations")
    return parser, sub


def configuration_error(service: str, exc: Exception) -> int:
    """The one line and exit status 2 of every bad setting, in every command."""
    print(f"{service}: configuration error: {exc}", file=sys.stderr)
    return 2


def run_service(
    service: str,
    settings_from_env: Callable[[Mapping[str, str]], S],
    create_app: Callable[[S, TracerProvider | None], web.Application],
    environ: Mapping[str, str],
    *,
    check: Callable[[S], None] | None = None,
    delegate: Callable[[S], int | None] | None = None,
    reuse_port: bool = False,
    fatal: tuple[type[Exception], ...] = (),
) -> int:
    """Run a service's `serve` command until SIGTERM; its exit status.

    `check` validates what the settings only name (raise SettingsError); `delegate` may
    run the service another way and return its exit status (ingest's supervisor of
    workers), or None to serve here; `reuse_port` lets sibling processes share the port.
    """
    try:
        settings = settings_from_env(environ)
        if check is not None:
            check(settings)
    except SettingsError as exc:
        return configuration_error(service, exc)
    common = settings.common
    setup_logging(service, common.log_level)
    tune_gc()
    try:
        provider = build_tracer_provider(service, common.version, common.environment, environ)
    except SettingsError as exc:
        return configuration_error(service, exc)
    try:
        delegated = delegate(settings) if delegate is not None else None
        if delegated is not None:
            return delegated
        app = create_app(settings, provider)
        run(
            serve(
                app,
                settings.host,
                settings.port,
                shutdown_grace=common.shutdown_grace,
                reuse_port=reuse_port,
                limits=HttpLimits.of(common),
            )
        )
    except fatal as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 2
    finally:
        if provider is not None:
            provider.shutdown()  # flush the last spans
    return 0
