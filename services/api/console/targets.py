"""Where the console (served by the api) reaches the other services, server-side: the
alerting API for the alerts view, every service's `/health/detailed` for the health view.

Each URL defaults to the service's own host and port settings (`ALERTING_PORT`, ...), so
one machine (`make run`, on any ports) needs nothing set; in a cluster they name the
Services (`http://belfry-alerting:8082`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import Env

WILDCARD_HOSTS = ("0.0.0.0", "::", "*", "")
# (service, env prefix, default port)
SERVICES = (("ingest", "INGEST", 8080), ("writer", "WRITER", 8081), ("alerting", "ALERTING", 8082))


def _own_url(env: Env, prefix: str, default_port: int) -> str:
    host = env.text(f"{prefix}_HOST", "127.0.0.1")
    port = env.integer(f"{prefix}_PORT", default_port, lo=0, hi=65535) or default_port
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


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
            f"{name}_url": env.url(
                f"API_{prefix}_URL", _own_url(env, prefix, port), ("http", "https")
            ).rstrip("/")
            for name, prefix, port in SERVICES
        }
        timeout = env.number("API_CONSOLE_TIMEOUT_SECONDS", 3.0, lo=0.1)
        return cls(**urls, timeout_seconds=timeout)

    def urls(self) -> dict[str, str]:
        """service name → base URL."""
        return {
            "ingest": self.ingest_url,
            "writer": self.writer_url,
            "alerting": self.alerting_url,
        }
