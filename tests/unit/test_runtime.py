"""shared.runtime.run_service: the one `serve` shape of every service, in process.

Serving itself, SIGTERM and the drain are covered with real processes
(tests/integration/test_processes.py, tests/alerting/test_process.py); here, every way a
start ends before serving, with its exit status and its one line."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from services.ingest.spool import SpoolError
from shared.runtime import GC_THRESHOLDS, run_service
from shared.settings import CommonSettings, SettingsError


@dataclass(frozen=True)
class _Settings:
    common: CommonSettings
    host: str = "127.0.0.1"
    port: int = 0
    calls: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """setup_logging replaces the root handlers: pytest's capture would go with them."""
    calls: list[str] = []
    monkeypatch.setattr(
        "shared.runtime.setup_logging", lambda service, level: calls.append(service)
    )
    return calls


def _settings(environ: Mapping[str, str]) -> _Settings:
    return _Settings(CommonSettings.from_env("demo", environ))


def _no_app(_settings: _Settings, _provider: object) -> web.Application:
    raise AssertionError("no app is built when the start ends early")


def test_a_bad_setting_exits_2_with_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], _no_logging_setup: list[str]
) -> None:
    assert run_service("demo", _settings, _no_app, {"LOG_LEVEL": "LOUD"}) == 2
    assert not _no_logging_setup  # nothing starts before the settings are good
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("demo: configuration error: ") and "LOG_LEVEL" in err


def test_a_failed_check_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    def check(_settings: _Settings) -> None:
        raise SettingsError("DEMO_FILE: rule 'x' has no condition")

    assert run_service("demo", _settings, _no_app, {}, check=check) == 2
    assert capsys.readouterr().err == (
        "demo: configuration error: DEMO_FILE: rule 'x' has no condition\n"
    )


def test_a_bad_tracing_setting_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon",
    }
    assert run_service("demo", _settings, _no_app, environ) == 2
    err = capsys.readouterr().err
    assert err.startswith("demo: configuration error: ") and "OTEL_EXPORTER_OTLP_PROTOCOL" in err


def test_a_delegate_runs_instead_of_serving_and_its_status_is_the_exit_status(
    _no_logging_setup: list[str],
) -> None:
    seen: list[_Settings] = []

    def supervise(settings: _Settings) -> int:
        seen.append(settings)
        return 3

    assert run_service("demo", _settings, _no_app, {}, delegate=supervise) == 3
    assert len(seen) == 1
    assert _no_logging_setup == ["demo"]  # settings, then logging, then the delegate


def test_a_declared_fatal_error_exits_2_with_its_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def spool_held(_settings: _Settings, _provider: object) -> web.Application:
        raise SpoolError("spool /x is in use by another process")

    assert run_service("demo", _settings, spool_held, {}, fatal=(SpoolError,)) == 2
    assert capsys.readouterr().err == "demo: spool /x is in use by another process\n"


def test_an_undeclared_error_is_not_swallowed() -> None:
    def broken(_settings: _Settings, _provider: object) -> web.Application:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_service("demo", _settings, broken, {})


@pytest.mark.parametrize("service", ["ingest", "writer", "alerting", "api"])
@pytest.mark.parametrize("argv", [[], ["serve"]])
def test_every_service_serves_through_the_runtime_with_the_same_bad_setting_line(
    service: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    _no_logging_setup: list[str],
) -> None:
    main = importlib.import_module(f"services.{service}.__main__").main
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{service}: configuration error: LOG_LEVEL ") and err.count("\n") == 1
    assert not _no_logging_setup


def test_a_service_runs_with_the_gc_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service (and bench_tick, which measures the alerting engine as it runs)
    collects garbage less often than CPython's default: see GC_THRESHOLDS."""
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    try:
        run_service(
            "demo", _settings, _no_app, {}, delegate=lambda s: seen.append(gc.get_threshold()) or 0
        )
        assert seen == [GC_THRESHOLDS]
    finally:
        gc.set_threshold(*before)
