"""What `make run` prints once every service is ready: URLs and commands that work on
this run's ports, with this run's keys, ready to paste."""

from __future__ import annotations

import json
import shlex

from devtools.run.config import (
    DEV_SETTINGS,
    OPS_CHANNEL,
    OPS_CHANNEL_TYPE,
    OPS_TENANT,
    Config,
    Endpoint,
)
from shared.ingest_tokens import mint_token, parse_keys
from shared.settings import redact_url
from shared.signing import SigningKeys, click_path

DEMO_TENANT, DEMO_EMAIL, DEMO_TARGET = "demo", "hello", "https://example.com/"
EVENTS_SQL = (
    "select kind, tenant_id, email_id, occurred_at from events order by occurred_at desc limit 5"
)


def banner(config: Config) -> str:
    by_name = {e.service.name: e for e in config.endpoints}
    ingest, alerting = by_name.get("ingest"), by_name.get("alerting")
    lines = ["", "Belfry is running. Try:"]
    if ingest is not None:
        lines += _ingest_lines(config, ingest.base_url)
    lines += _api_lines(config, by_name.get("api"), alerting)
    lines += [
        f"  stored rows   psql {shlex.quote(redact_url(config.common.database_url))} "
        f"-c {shlex.quote(EVENTS_SQL)}",
        *_ops_lines(config, alerting),
    ]
    if ingest is not None:
        lines += _metric_lines(config, ingest.base_url)
    if config.dev_settings:
        lines.append("Set by make run for development (set them yourself to change):")
        lines += [f"  {k}={v}  # {DEV_SETTINGS[k]}" for k, v in config.dev_settings]
    lines.append("Probes and metrics:")
    width = max(len(e.service.name) for e in config.endpoints)
    for e in config.endpoints:
        lines.append(
            f"  {e.service.name.ljust(width)}  {e.base_url}/readyz  {e.base_url}/metrics  "
            "(also /livez /health /health/detailed)"
        )
    lines += ["Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def _ingest_lines(config: Config, base: str) -> list[str]:
    """A pixel, a signed click and a batch of both, for the demo tenant."""
    keys = SigningKeys.parse(config.signing_keys)
    body = json.dumps(
        [
            {"type": "open", "tenant": DEMO_TENANT, "email_id": DEMO_EMAIL},
            {"type": "click", "tenant": DEMO_TENANT, "email_id": DEMO_EMAIL, "url": DEMO_TARGET},
        ],
        separators=(",", ":"),
    )
    return [
        f"  open pixel    {base}/{DEMO_TENANT}/pixel/{DEMO_EMAIL}.gif",
        f"  signed click  {base}{click_path(keys, DEMO_TENANT, DEMO_EMAIL, DEMO_TARGET)}",
        f"  batch track   curl -si {base}/v1/track -H 'Content-Type: application/json' "
        f"{_token_header(config)}-d '{body}'",
    ]


def _api_lines(config: Config, api: Endpoint | None, alerting: Endpoint | None) -> list[str]:
    """The dashboard and console views, with the dev tenants' keys."""
    keys, lines = dict(config.api_keys), []
    if api is not None and DEMO_TENANT in keys:
        auth = f"-H 'Authorization: Bearer {keys[DEMO_TENANT]}'"
        lines += [
            f"  dashboard     {api.base_url}/{DEMO_TENANT}/dashboard#key={keys[DEMO_TENANT]}",
            f"  alerts view   {api.base_url}/{DEMO_TENANT}/console/alerts#key={keys[DEMO_TENANT]}",
            f"  create email  curl -s -X POST {api.base_url}/{DEMO_TENANT}/emails {auth} "
            """-H 'Content-Type: application/json' -d '{"subject": "hi"}'""",
            f"  stats         curl -s {api.base_url}/{DEMO_TENANT}/stats {auth}",
        ]
    if api is not None and "belfry" in keys:  # Belfry's operators: tenant belfry's key
        lines.append(f"  health view   {api.base_url}/console/health#key={keys['belfry']}")
    if alerting is not None and "belfry" in keys:
        lines.append(
            f"  Belfry alerts curl -s {alerting.base_url}/api/v1/alerts "
            f"-H 'Authorization: Bearer {keys['belfry']}'"
        )
    return lines


def _ops_lines(config: Config, alerting: Endpoint | None) -> list[str]:
    """Where Belfry's own alerts go, and how to send them elsewhere."""
    if not config.ops_channel_type or alerting is None:
        return []
    where = (
        "a JSON line in the alerting output"
        if config.ops_channel_type == OPS_CHANNEL_TYPE
        else f"a {config.ops_channel_type} channel"
    )
    key = dict(config.api_keys).get(OPS_TENANT, "<belfry key>")
    return [
        f"Belfry's own alerts go to channel {OPS_CHANNEL} ({where}); point it elsewhere with",
        f"  curl -s -X PUT {alerting.base_url}/api/v1/channels/{OPS_CHANNEL} "
        f"-H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        """-d '{"type": "webhook", "config": {"url": "http://127.0.0.1:9000/hook"}}'""",
    ]


def _metric_lines(config: Config, base: str) -> list[str]:
    """The demo tenant's metrics in through each protocol, ready to paste (one token)."""
    keys = parse_keys(config.token_keys)
    if keys is None:
        return []
    token = mint_token(keys, DEMO_TENANT)
    sample = '[{"name":"queue_depth","value":42,"labels":{"queue":"mail"}}]'
    return [
        f'Send metrics as tenant {DEMO_TENANT} (README "Send your metrics"):',
        f"  samples       curl -si {base}/v1/samples -H 'Content-Type: application/json' "
        f"-H 'Authorization: Bearer {token}' -d '{sample}'",
        f"  OTel SDK      OTEL_EXPORTER_OTLP_METRICS_ENDPOINT={base}/v1/metrics "
        f"OTEL_EXPORTER_OTLP_METRICS_HEADERS=Authorization=Bearer%20{token}",
        f'  Prometheus    remote_write: [{{url: "{base}/api/v1/write", '
        f'authorization: {{credentials: "{token}"}}}}]',
    ]


def _token_header(config: Config) -> str:
    """The demo tenant's ingest token as a curl header (a fresh one each banner)."""
    keys = parse_keys(config.token_keys)
    if keys is None:
        return ""
    return f"-H 'Authorization: Bearer {mint_token(keys, DEMO_TENANT)}' "
