"""WriterSettings: the one frozen configuration object of the writer service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import CommonSettings, Env


@dataclass(frozen=True, slots=True)
class WriterSettings:
    common: CommonSettings
    host: str = "0.0.0.0"
    port: int = 8081
    # Unacked messages the broker may hand us; at ~50 events per message this keeps a
    # few thousand rows ready for the next insert.
    prefetch: int = 100
    batch_rows: int = 5000
    # Fewer, larger inserts pay: Postgres spends ~3 ms of CPU per INSERT statement (the
    # stats rollup triggers) plus ~50 µs per row; a hit is stored up to this much later.
    batch_delay: float = 0.15
    backoff_min: float = 0.2
    backoff_max: float = 10.0
    migrate_on_start: bool = True
    # How long /readyz waits for the broker to answer before saying it doesn't.
    check_timeout: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WriterSettings:
        env = Env(environ)
        return cls(
            common=CommonSettings.from_env("writer", environ),
            host=env.text("WRITER_HOST", "0.0.0.0"),
            port=env.integer("WRITER_PORT", 8081, lo=0, hi=65535),
            prefetch=env.integer("WRITER_PREFETCH", 100, lo=1, hi=65535),
            batch_rows=env.integer("WRITER_BATCH_ROWS", 5000, lo=1, hi=100_000),
            batch_delay=env.integer("WRITER_BATCH_DELAY_MS", 150, lo=0, hi=10_000) / 1000,
            backoff_max=env.number("WRITER_BACKOFF_MAX_SECONDS", 10.0, lo=0.1),
            migrate_on_start=env.flag("WRITER_MIGRATE", True),
            check_timeout=env.number("WRITER_CHECK_TIMEOUT_SECONDS", 2.0, lo=0.1),
        )
