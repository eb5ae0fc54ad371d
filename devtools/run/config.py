"""`make run`'s configuration: the services it starts and where, the keys and the dev
settings it supplies when the user did not (persisted under var/ so links survive a
restart), all read with the services' own parsers so defaults can't drift apart."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devtools import ROOT
from devtools.run.fatal import Fatal
from services.api.console.targets import ConsoleTargets
from shared.ingest_tokens import parse_keys
from shared.settings import CommonSettings, Env, SettingsError
from shared.signing import SigningKeys


@dataclass(frozen=True, slots=True)
class Service:
    """One child process: `python -m services.<name>`, listening on <NAME>_HOST:<NAME>_PORT."""

    name: str
    default_port: int

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def port_env(self) -> str:
        return f"{self.name.upper()}_PORT"

    @property
    def host_env(self) -> str:
        return f"{self.name.upper()}_HOST"


# Every service `make run` starts, in start order. Adding a service is one line here.
SERVICES: tuple[Service, ...] = (
    Service("ingest", 8080),
    Service("writer", 8081),
    Service("alerting", 8082),
    Service("api", 8083),
)

DEV_KEY_FILE = ROOT / "var" / "dev-signing-key"
DEV_TOKEN_KEY_FILE = ROOT / "var" / "dev-ingest-token-key"  # INGEST_TOKEN_KEYS when unset
# Dev API keys (tenant -> key) for the demo tenant and Belfry's own alerts; only hashes are
# in the database, so the keys printed in the banner are kept here (0600).
DEV_API_KEYS_FILE = ROOT / "var" / "dev-api-keys.json"
DEV_TENANTS = ("demo", "belfry")
RULES_FILE = ROOT / "infra" / "alerting" / "rules.yaml"
# Development only: channels may notify receivers on this machine (a webhook on
# 127.0.0.1); the services default to refusing every internal address.
DEV_EGRESS_ALLOW = "127.0.0.0/8,::1/128"
# The channel Belfry's rule pack notifies; created as a `log` channel when missing, so
# Belfry's own alerts show up in the alerting service's output from the first run.
OPS_TENANT, OPS_CHANNEL, OPS_CHANNEL_TYPE = "belfry", "belfry-ops", "log"
# What each variable `make run` supplies means, for the banner.
DEV_SETTINGS = {
    "ALERTING_RULES_FILE": "Belfry's own rule pack (tenant belfry)",
    "ALERTING_EGRESS_ALLOW_CIDRS": "channels may notify receivers on this machine; "
    "development only, never in production",
    "API_PUBLIC_URL": "the ingest: pixel and click URLs the api hands out point here",
    **{
        f"API_{name.upper()}_URL": f"the {name}, as the console reaches it"
        for name in ConsoleTargets().urls()
    },
}
READY_TIMEOUT = 60.0  # every service's /readyz must answer 200 within this
STOP_TIMEOUT = 30.0  # SIGTERM → SIGKILL; the services drain well inside it (README, Guarantees)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one started service answers."""

    service: Service
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    common: CommonSettings
    signing_keys: str
    dev_key: bool
    endpoints: tuple[Endpoint, ...]
    api_keys: tuple[tuple[str, str], ...] = ()  # (tenant, key) for the banner
    token_keys: str = ""  # INGEST_TOKEN_KEYS: the banner mints the demo's ingest token
    # Variables `make run` gives the services because the user did not set them.
    dev_settings: tuple[tuple[str, str], ...] = ()
    ops_channel_type: str = ""  # what `belfry-ops` is, for the banner

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        # The services' own parser, so defaults and validation can't drift apart.
        common = CommonSettings.from_env("run", environ)
        env = Env(environ)
        raw_keys = env.text("CLICK_SIGNING_KEYS", "")
        dev_key = not raw_keys
        if dev_key:
            raw_keys = dev_signing_key()
        try:
            SigningKeys.parse(raw_keys)
        except SettingsError as exc:
            where = f"{DEV_KEY_FILE} (delete it to get a new one)" if dev_key else "the env"
            raise Fatal(f"{exc}; from {where}") from None
        endpoints = []
        for svc in SERVICES:
            port = env.integer(svc.port_env, svc.default_port, lo=1, hi=65535)
            host = env.text(svc.host_env, "0.0.0.0")
            # A wildcard listener answers on loopback; that is the URL a developer can open.
            probe_host = "127.0.0.1" if host in ("0.0.0.0", "::", "*") else host
            endpoints.append(Endpoint(svc, probe_host, port))
        ports = [e.port for e in endpoints]
        if len(set(ports)) != len(ports):
            names = ", ".join(f"{e.service.port_env}={e.port}" for e in endpoints)
            raise Fatal(f"two services would share a port ({names}): give each its own")
        token_keys = env.text("INGEST_TOKEN_KEYS", "") or dev_signing_key(DEV_TOKEN_KEY_FILE)
        try:
            parse_keys(token_keys)
        except SettingsError as exc:
            raise Fatal(f"{exc} (for a dev key, unset it or delete {DEV_TOKEN_KEY_FILE})") from None
        return cls(
            common,
            raw_keys,
            dev_key,
            tuple(endpoints),
            token_keys=token_keys,
            dev_settings=dev_settings(tuple(endpoints), environ),
        )

    def service_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment every service starts with: the user's, the keys, the dev
        settings."""
        return dict(
            environ,
            CLICK_SIGNING_KEYS=self.signing_keys,
            INGEST_TOKEN_KEYS=self.token_keys,
            PYTHONUNBUFFERED="1",
            **dict(self.dev_settings),
        )


def dev_settings(
    endpoints: tuple[Endpoint, ...], environ: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The DEV_SETTINGS values for these endpoints, those the user left unset."""
    values = {
        # Belfry watches itself from the first run: the default rule pack.
        "ALERTING_RULES_FILE": str(RULES_FILE),
        "ALERTING_EGRESS_ALLOW_CIDRS": DEV_EGRESS_ALLOW,
    }
    ingest = next((e for e in endpoints if e.service.name == "ingest"), None)
    if ingest is not None:  # the api's links must reach this ingest, on whatever port
        values["API_PUBLIC_URL"] = ingest.base_url
    console = ConsoleTargets().urls()
    for endpoint in endpoints:  # the console reaches the services, on whatever port
        if console.get(endpoint.service.name, endpoint.base_url) != endpoint.base_url:
            values[f"API_{endpoint.service.name.upper()}_URL"] = endpoint.base_url
    return tuple((k, v) for k, v in values.items() if not environ.get(k))


def dev_signing_key(path: Path = DEV_KEY_FILE) -> str:
    """The persisted dev key (`dev:<secret>`), created once so signed links (and ingest
    tokens, from their own file) survive restarts."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"dev:{secrets.token_urlsafe(32)}"
    # O_EXCL + 0600: a key only this user reads, and two concurrent runs can't both write.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
