"""Where the console (served by the api) reaches the other services, server-side: the
alerting API for the alerts view, every service's `/health/detailed` for the health view.

Each URL defaults to the service's default port on this machine (`make run` sets them when
it runs the services on other ports); in a cluster they name the Services
(`http://belfry-alerting:8082`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import Env


@dataclass(frozen=True, slots=True)
class ConsoleTargets:
    ingest_url: str = "http://127.0.0.1:8080"
    writer_url: str = "http://127.0.0.1:8081"
    alerting_url: str = "http://127.0.0.1:8082"
    # Per call to another service: a service that does not answer in time shows as down.
    timeout_seconds: float = 3.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ConsoleTargets:
        env = Env(environ)
        urls = {
            f"{name}_url": env.url(f"API_{name.upper()}_URL", default, ("http", "https"))
            for name, default in cls().urls().items()
        }
        urls = {k: v.rstrip("/") for k, v in urls.items()}
        timeout = env.number("API_CONSOLE_TIMEOUT_SECONDS", 3.0, lo=0.1)
        return cls(**urls, timeout_seconds=timeout)

    def urls(self) -> dict[str, str]:
        """service name → base URL."""
        return {
            "ingest": self.ingest_url,
            "writer": self.writer_url,
            "alerting": self.alerting_url,
        }
