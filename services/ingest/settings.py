"""IngestSettings: the one frozen configuration object of the ingest service."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from services.ingest.intake.limits import LimitSettings
from shared.ids import valid_tenant
from shared.ingest_tokens import TenantSelection, parse_keys
from shared.samples import MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_LEN, MAX_LABELS, MAX_NAME_LEN
from shared.settings import CommonSettings, Env, SettingsError
from shared.signing import SigningKeys


@dataclass(frozen=True, slots=True)
class IngestSettings:
    common: CommonSettings
    signing: SigningKeys
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    spool_dir: Path = Path("var/spool/ingest")
    spool_max_bytes: int = 1 << 30
    batch_max: int = 200
    batch_delay: float = 0.005
    max_in_flight: int = 64
    # Batches sent at once, before a confirm, when idle (publisher.BatchPublisher).
    eager_in_flight: int = 1
    confirm_timeout: float = 2.0
    # Answer plain pixel requests below aiohttp's web stack (services/ingest/fastpixel.py).
    pixel_fast_path: bool = True
    # Publish hits on a connection of their own (services/ingest/publishlane.py).
    publish_lane: bool = True
    # How long start-up waits for the first broker connect before opening the port.
    broker_startup_wait: float = 5.0
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # tenant -> domains whose unsigned `?url=` links still redirect (Little Bell migration).
    unsigned_click_domains: Mapping[str, frozenset[str]] = field(default_factory=dict)
    track_max_bytes: int = 1 << 20
    track_max_items: int = 1000
    track_max_age_days: int = 30
    retry_after_seconds: int = 5
    # Verify ingest tokens (shared.ingest_tokens); None: no token verifies.
    token_keys: SigningKeys | None = None
    # Tenants whose `/v1/track` hits need `Authorization: Bearer <ingest token>`.
    track_require_token: TenantSelection = field(default_factory=TenantSelection)
    # Metric intake (/v1/metrics, /api/v1/write, /v1/samples): per-tenant limits, the body
    # as sent (refused past it before it is read) and once un-gzipped / un-snappied.
    intake_limits: LimitSettings = field(default_factory=LimitSettings)
    intake_max_body_bytes: int = 10 << 20
    intake_max_decoded_bytes: int = 32 << 20
    # /v1/samples items per request.
    intake_max_items: int = 10_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> IngestSettings:
        env = Env(environ)
        common = CommonSettings.from_env("ingest", environ)
        return cls(
            common=common,
            signing=SigningKeys.parse(env.text("CLICK_SIGNING_KEYS", "")),
            host=env.text("INGEST_HOST", "0.0.0.0"),
            port=env.integer("INGEST_PORT", 8080, lo=0, hi=65535),
            workers=env.integer("INGEST_WORKERS", 1, lo=1, hi=64),
            # Per prefix by default: two systems on one checkout never share a spool.
            spool_dir=Path(env.text("INGEST_SPOOL_DIR", f"var/spool/{common.prefix}/ingest")),
            spool_max_bytes=env.integer("INGEST_SPOOL_MAX_BYTES", 1 << 30, lo=1024),
            batch_max=env.integer("INGEST_BATCH_MAX", 200, lo=1, hi=10000),
            batch_delay=env.integer("INGEST_BATCH_DELAY_MS", 5, lo=0, hi=1000) / 1000,
            max_in_flight=env.integer("INGEST_MAX_IN_FLIGHT", 64, lo=1, hi=10000),
            eager_in_flight=env.integer("INGEST_EAGER_IN_FLIGHT", 1, lo=1, hi=64),
            confirm_timeout=env.integer("INGEST_CONFIRM_TIMEOUT_MS", 2000, lo=10) / 1000,
            pixel_fast_path=env.flag("INGEST_PIXEL_FAST_PATH", True),
            publish_lane=env.flag("INGEST_PUBLISH_LANE", True),
            broker_startup_wait=env.integer("INGEST_BROKER_STARTUP_WAIT_MS", 5000, lo=0) / 1000,
            trusted_proxies=env.networks("INGEST_TRUSTED_PROXIES"),  # type: ignore[arg-type]
            unsigned_click_domains=parse_unsigned_domains(
                env.text("INGEST_UNSIGNED_CLICK_DOMAINS", "")
            ),
            track_max_bytes=env.integer("TRACK_MAX_BYTES", 1 << 20, lo=1024),
            track_max_items=env.integer("TRACK_MAX_ITEMS", 1000, lo=1),
            track_max_age_days=env.integer("TRACK_MAX_AGE_DAYS", 30, lo=1),
            **_token_settings(env),
            **_intake_settings(env),
        )


def _token_settings(env: Env) -> dict[str, Any]:
    keys = parse_keys(env.text("INGEST_TOKEN_KEYS", ""))
    require = TenantSelection.parse(
        env.text("INGEST_TRACK_REQUIRE_TOKEN", ""), "INGEST_TRACK_REQUIRE_TOKEN"
    )
    if require and keys is None:
        raise SettingsError("INGEST_TRACK_REQUIRE_TOKEN needs INGEST_TOKEN_KEYS to verify tokens")
    return {"token_keys": keys, "track_require_token": require}


def _intake_settings(env: Env) -> dict[str, Any]:
    defaults = LimitSettings()
    try:
        limits = LimitSettings(
            samples_per_second=env.number("INTAKE_SAMPLES_PER_SECOND", defaults.samples_per_second),
            burst_samples=env.integer("INTAKE_BURST_SAMPLES", defaults.burst_samples, lo=1),
            max_series=env.integer("INTAKE_MAX_SERIES", defaults.max_series, lo=1),
            series_idle_seconds=env.number(
                "INTAKE_SERIES_IDLE_SECONDS", defaults.series_idle_seconds
            ),
            max_labels=env.integer("INTAKE_MAX_LABELS", defaults.max_labels, lo=1, hi=MAX_LABELS),
            max_label_name_len=env.integer(
                "INTAKE_MAX_LABEL_NAME_LEN",
                defaults.max_label_name_len,
                lo=1,
                hi=MAX_LABEL_NAME_LEN,
            ),
            max_label_value_len=env.integer(
                "INTAKE_MAX_LABEL_VALUE_LEN",
                defaults.max_label_value_len,
                lo=1,
                hi=MAX_LABEL_VALUE_LEN,
            ),
            max_name_len=env.integer(
                "INTAKE_MAX_NAME_LEN", defaults.max_name_len, lo=1, hi=MAX_NAME_LEN
            ),
            max_tenants=env.integer("INTAKE_MAX_TENANTS", defaults.max_tenants, lo=1),
        )
    except SettingsError:
        raise
    except ValueError as exc:  # a rate or idle time of 0: LimitSettings names the field
        field_name = str(exc).split()[2]
        raise SettingsError(f"INTAKE_{field_name.upper()} must be > 0") from None
    body = env.integer("INTAKE_MAX_BODY_BYTES", 10 << 20, lo=1024)
    decoded = env.integer("INTAKE_MAX_DECODED_BYTES", 32 << 20, lo=1024)
    if decoded < body:
        raise SettingsError("INTAKE_MAX_DECODED_BYTES must be >= INTAKE_MAX_BODY_BYTES")
    return {
        "intake_limits": limits,
        "intake_max_body_bytes": body,
        "intake_max_decoded_bytes": decoded,
        "intake_max_items": env.integer("INTAKE_MAX_ITEMS", 10_000, lo=1, hi=100_000),
    }


def parse_unsigned_domains(raw: str) -> dict[str, frozenset[str]]:
    """`{"tenant": ["example.com", ...]}` → tenant → lowercase domains."""
    name = "INGEST_UNSIGNED_CLICK_DOMAINS"
    if not raw:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SettingsError(f'{name} must be JSON like {{"acme": ["example.com"]}}') from None
    if not isinstance(doc, dict):
        raise SettingsError(f"{name} must be a JSON object of tenant -> list of domains")
    out: dict[str, frozenset[str]] = {}
    for tenant, domains in doc.items():
        if not valid_tenant(tenant):
            raise SettingsError(f"{name}: {tenant!r} is not a valid tenant id")
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise SettingsError(f"{name}: domains of {tenant!r} must be a list of strings")
        out[tenant] = frozenset(d.lower().strip(".") for d in domains)
    return out
