"""ApiSettings: the one frozen configuration object of the api service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.api.console.targets import ConsoleTargets
from shared.settings import CommonSettings, Env
from shared.signing import SigningKeys

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
WILDCARD_HOSTS = ("0.0.0.0", "::", "*", "")


def ingest_url(environ: Mapping[str, str]) -> str:
    """The ingest's own address from its INGEST_HOST/INGEST_PORT: where pixel and click
    URLs work when API_PUBLIC_URL is unset (one machine, e.g. `make run` on other ports)."""
    env = Env(environ)
    host = env.text("INGEST_HOST", "0.0.0.0")
    port = env.integer("INGEST_PORT", 8080, lo=0, hi=65535)
    if port == 0:  # an ephemeral port: nothing to derive
        return DEFAULT_PUBLIC_URL
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


@dataclass(frozen=True, slots=True)
class ApiSettings:
    common: CommonSettings
    # Signs click links exactly as the ingest verifies them (same CLICK_SIGNING_KEYS).
    signing: SigningKeys
    host: str = "0.0.0.0"
    port: int = 8083
    # Base URL of the tracking host (the ingest, or the shared host whose Ingress routes
    # pixel/click paths to it): pixel and click URLs handed out start with it.
    public_url: str = DEFAULT_PUBLIC_URL
    # Little Bell's unauthenticated routes, for a migration period only.
    little_bell_open: bool = False
    # Rows per server-side cursor fetch while exporting: bounds the export's memory.
    export_chunk_rows: int = 2000
    # How often the dashboard page polls for fresh figures.
    dashboard_poll_seconds: int = 15
    # Rows in "top links".
    top_links: int = 10
    # Apply pending migrations at start-up (in the background, like the writer).
    migrate_on_start: bool = True
    # The other services, as the console reaches them (console/targets.py).
    console: ConsoleTargets = field(default_factory=ConsoleTargets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiSettings:
        env = Env(environ)
        # Unset: the ingest's own address (read only then, so a set one never needs it).
        public_default = "" if env.text("API_PUBLIC_URL", "") else ingest_url(environ)
        return cls(
            common=CommonSettings.from_env("api", environ),
            signing=SigningKeys.parse(env.text("CLICK_SIGNING_KEYS", "")),
            host=env.text("API_HOST", "0.0.0.0"),
            port=env.integer("API_PORT", 8083, lo=0, hi=65535),
            public_url=env.url("API_PUBLIC_URL", public_default, ("http", "https")).rstrip("/"),
            little_bell_open=env.flag("API_LITTLE_BELL_OPEN", False),
            export_chunk_rows=env.integer("API_EXPORT_CHUNK_ROWS", 2000, lo=1, hi=100_000),
            dashboard_poll_seconds=env.integer("API_DASHBOARD_POLL_SECONDS", 15, lo=1, hi=3600),
            top_links=env.integer("API_TOP_LINKS", 10, lo=1, hi=1000),
            migrate_on_start=env.flag("API_MIGRATE", True),
            console=ConsoleTargets.from_env(environ),
        )
