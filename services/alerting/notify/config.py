"""Channel configuration per channel type: what `alert_channels.config` may hold.

The alerting API validates a channel's config with `validate_channel_config` before it
stores it (400 with field errors) and shows it through `redact_channel_config`, so a
secret given once is never shown again. The delivery code reads the same shapes:

- webhook:      {url, secrets?: ["whsec_<base64>", ...], headers?: {name: value}}
                (several secrets during rotation: every one signs each message)
- slack:        {url}  (an incoming-webhook URL; its path is the secret)
- email:        {host, port?, username?, password?, tls?: "starttls"|"implicit"|"none",
                 from, to: [address, ...], verify_tls?: bool}
- alertmanager: {url, headers?: {name: value}}  (the Alertmanager base URL)
- pagerduty:    {routing_key, url?, severities?: {belfry severity: PagerDuty severity},
                 source?}  (Events API v2; `url` overrides ALERTING_PAGERDUTY_EVENTS_URL,
                 e.g. for an EU account; `routing_key` is a secret, never shown again)
- log:          {level?: "info"|"warning"|"error"}  (a JSON line in the service's log)

Field names in errors are dotted paths into the config (`secrets.1`, `headers.X-Foo`).
Given the egress allow-list, the API also refuses a `url` or `host` that is an internal
address in any spelling (`destinations.py`); delivery leaves that to the connect-time
guard, so a channel stored before still ends `refused`, with the reason.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from services.alerting.notify.destinations import destination_problem
from services.alerting.notify.ssrf import EgressPolicy, Network
from shared.jsonnum import json_int

CHANNEL_TYPES = ("webhook", "slack", "email", "alertmanager", "pagerduty", "log")
TLS_MODES = ("starttls", "implicit", "none")
LOG_LEVELS = ("info", "warning", "error")
SECRET_PREFIX = "whsec_"
MASK = "***"
MAX_URL_LEN = 2048
MAX_HEADERS = 20
MAX_RECIPIENTS = 50
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
BELFRY_SEVERITIES = ("critical", "warning", "info")

# Headers the delivery sets itself; a custom header may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "traceparent",
        "tracestate",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
    }
)
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}")
# An Events API v2 integration key: 32 characters (PagerDuty's are hex-like; letters
# and digits admitted).
_ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")


def _check_url(config: dict[str, Any], errors: dict[str, str], name: str = "url") -> None:
    value = config.get(name)
    if not isinstance(value, str) or not value:
        errors[name] = "required: an http(s) URL"
        return
    if len(value) > MAX_URL_LEN:
        errors[name] = f"longer than {MAX_URL_LEN} characters"
        return
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        ok = False
    if not ok:
        errors[name] = "must be an http(s) URL with a host"
    elif any(c.isspace() for c in value):
        errors[name] = "must not contain whitespace"


def _check_headers(config: dict[str, Any], errors: dict[str, str]) -> None:
    headers = config.get("headers")
    if headers is None:
        return
    if not isinstance(headers, dict):
        errors["headers"] = "must be an object of header name to string value"
        return
    if len(headers) > MAX_HEADERS:
        errors["headers"] = f"at most {MAX_HEADERS} headers"
        return
    for name, value in headers.items():
        key = f"headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            errors[key] = "not a valid header name"
        elif name.lower() in RESERVED_HEADERS:
            errors[key] = "set by Belfry itself; cannot be overridden"
        elif not isinstance(value, str) or "\r" in value or "\n" in value or len(value) > 4096:
            errors[key] = "must be a single-line string of at most 4096 characters"


def valid_secret(secret: Any) -> bool:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 to 64 bytes."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64


def _check_webhook(config: dict[str, Any], errors: dict[str, str]) -> None:
    _check_url(config, errors)
    _check_headers(config, errors)
    secrets = config.get("secrets")
    if secrets is None:
        return
    if not isinstance(secrets, list) or len(secrets) > 5:
        errors["secrets"] = "must be a list of at most 5 'whsec_<base64>' secrets"
        return
    for i, secret in enumerate(secrets):
        if not valid_secret(secret):
            errors[f"secrets.{i}"] = "must be 'whsec_' followed by base64 of 24 to 64 bytes"


def _check_slack(config: dict[str, Any], errors: dict[str, str]) -> None:
    _check_url(config, errors)


def _check_alertmanager(config: dict[str, Any], errors: dict[str, str]) -> None:
    _check_url(config, errors)
    _check_headers(config, errors)


def _check_pagerduty(config: dict[str, Any], errors: dict[str, str]) -> None:
    key = config.get("routing_key")
    if not isinstance(key, str) or not _ROUTING_KEY.fullmatch(key):
        errors["routing_key"] = "required: the integration's 32-character routing key"
    if config.get("url") is not None:
        _check_url(config, errors)
    severities = config.get("severities")
    if severities is not None:
        if not isinstance(severities, dict):
            errors["severities"] = "must map Belfry severities to PagerDuty severities"
        else:
            for name, value in severities.items():
                if name not in BELFRY_SEVERITIES:
                    errors[f"severities.{name}"] = f"not one of {', '.join(BELFRY_SEVERITIES)}"
                elif value not in PAGERDUTY_SEVERITIES:
                    errors[f"severities.{name}"] = (
                        f"must be one of {', '.join(PAGERDUTY_SEVERITIES)}"
                    )
    source = config.get("source")
    if source is not None and (not isinstance(source, str) or not 0 < len(source) <= 255):
        errors["source"] = "must be a string of 1 to 255 characters"


def _check_email(config: dict[str, Any], errors: dict[str, str]) -> None:
    host = config.get("host")
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        errors["host"] = "required: an SMTP host name or address"
    port = config.get("port")
    if port is not None:
        if json_int(port, 1, 65535) is None:
            errors["port"] = "must be an integer between 1 and 65535"
        else:
            config["port"] = json_int(port, 1, 65535)  # 25.0 is stored as 25
    tls = config.get("tls", "starttls")
    if tls not in TLS_MODES:
        errors["tls"] = f"must be one of {', '.join(TLS_MODES)}"
    for name in ("username", "password"):
        value = config.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 512):
            errors[name] = "must be a string of at most 512 characters"
    if (config.get("password") is not None) != (config.get("username") is not None):
        errors.setdefault("username", "username and password go together")
    verify = config.get("verify_tls")
    if verify is not None and not isinstance(verify, bool):
        errors["verify_tls"] = "must be true or false"
    sender = config.get("from")
    if not isinstance(sender, str) or not _ADDRESS.fullmatch(sender):
        errors["from"] = "required: an email address"
    to = config.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or len(to) > MAX_RECIPIENTS:
        errors["to"] = f"required: a list of 1 to {MAX_RECIPIENTS} email addresses"
        return
    for i, address in enumerate(to):
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            errors[f"to.{i}"] = "not an email address"


def _check_log(config: dict[str, Any], errors: dict[str, str]) -> None:
    level = config.get("level")
    if level is not None and level not in LOG_LEVELS:
        errors["level"] = f"must be one of {', '.join(LOG_LEVELS)}"


_CHECKS = {
    "webhook": _check_webhook,
    "slack": _check_slack,
    "email": _check_email,
    "alertmanager": _check_alertmanager,
    "pagerduty": _check_pagerduty,
    "log": _check_log,
}


def _check_destination(
    channel_type: str, config: dict[str, Any], errors: dict[str, str], policy: EgressPolicy
) -> None:
    field = "host" if channel_type == "email" else "url"
    if channel_type == "log" or field in errors:  # no destination: the service's own log
        return
    if config.get(field) is None:  # pagerduty without `url`: the events URL of the settings
        return
    value = str(config[field])
    host = value if field == "host" else urlsplit(value).hostname or ""
    problem = destination_problem(host, policy)
    if problem is not None:
        errors[field] = problem


def validate_channel_config(
    channel_type: str, config: Any, *, egress_allow: Sequence[Network] | None = None
) -> dict[str, str]:
    """Field → error for a channel's config; an empty dict means valid. With
    `egress_allow` (the service's allow-list), a destination the egress guard would
    always refuse is an error too."""
    check = _CHECKS.get(channel_type)
    if check is None:
        return {"type": f"must be one of {', '.join(CHANNEL_TYPES)}"}
    if not isinstance(config, dict):
        return {"config": "must be an object"}
    errors: dict[str, str] = {}
    check(config, errors)
    if egress_allow is not None:
        _check_destination(channel_type, config, errors, EgressPolicy(egress_allow))
    return errors


def _mask_url(url: Any, *, whole_path: bool = False) -> Any:
    """The URL without its password and query (tokens hide there); for Slack the path too."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}:{MASK}@" if parts.password else ""
    path = parts.path
    if whole_path and path not in ("", "/"):
        path = "/" + MASK
    query = f"?{MASK}" if parts.query else ""
    return f"{parts.scheme}://{user}{host}{port}{path}{query}"


def _mask_secret(secret: Any) -> str:
    # The first characters after the prefix tell rotated secrets apart, nothing more.
    if isinstance(secret, str) and secret.startswith(SECRET_PREFIX) and len(secret) > 14:
        return f"{secret[:10]}{MASK}"
    return MASK


def redact_channel_config(channel_type: str, config: Any) -> dict[str, Any]:
    """The config with every secret masked: fit to show through the API or to log."""
    if not isinstance(config, dict):
        return {}
    out = dict(config)
    if "url" in out:
        out["url"] = _mask_url(out["url"], whole_path=channel_type == "slack")
    if isinstance(out.get("secrets"), list):
        out["secrets"] = [_mask_secret(s) for s in out["secrets"]]
    if isinstance(out.get("headers"), dict):
        # Custom headers usually carry credentials (Authorization, X-Api-Key).
        out["headers"] = {k: MASK for k in out["headers"]}
    if out.get("password") is not None:
        out["password"] = MASK
    if out.get("routing_key") is not None:
        out["routing_key"] = MASK
    return out
