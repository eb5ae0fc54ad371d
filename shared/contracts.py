"""Versioned event contracts and the one envelope they travel in.

An envelope is a JSON object::

    {"id": "<uuidv7>", "type": "hit.open.v1", "tenant": "acme",
     "occurred_at": "<RFC 3339>", "received_at": "<RFC 3339>",
     "data": {...}, "trace": {"traceparent": "..."}}

Events travel in batches: one AMQP message (type `batch.v1`) whose body is a JSON array
of envelopes. A contract change is a new type (`hit.open.v2`), never an edit of a
published one: consumers of v1 keep working while producers move on.

Hits: `hit.open.v1` / `hit.click.v1` data = {email_id, ip?, ua?, props?, url (click)}.
`hit.open.v2` / `hit.click.v2` add `hints` = {purpose?: str, dnt?: bool, gpc?: bool}: what
the request said about itself (a prefetch, Do Not Track, Global Privacy Control), read by
the writer's machine-open classifier and privacy rules. v1 events stay valid; the writer
reads a v1 `props.purpose` as the hint it was before v2 existed.

Producers build envelopes as plain dicts (the hot path can't afford objects);
consumers validate each one with `validate_envelope`, which names what is wrong.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.errors_contract import ERROR_V1, ErrorContractError, validate_error_v1
from shared.ids import valid_email_id, valid_tenant
from shared.samples import METRIC_V2, SampleContractError, validate_metric_v2

BATCH_V1 = "batch.v1"
HIT_OPEN_V1 = "hit.open.v1"
HIT_CLICK_V1 = "hit.click.v1"
HIT_OPEN_V2 = "hit.open.v2"
HIT_CLICK_V2 = "hit.click.v2"
MAX_PURPOSE_LEN = 64
EMAIL_REGISTERED_V1 = "email.registered.v1"
METRIC_V1 = "metric.v1"
ALERT_NOTIFICATION_V1 = "alert.notification.v1"
ALERT_NOTIFICATION_V2 = "alert.notification.v2"
ALERT_STATUSES = ("firing", "resolved")
# v2 adds `acknowledged`: someone acknowledged the alert in Belfry (it still fires).
ALERT_STATUSES_V2 = (*ALERT_STATUSES, "acknowledged")

MAX_URL_LEN = 2048
MAX_UA_LEN = 1024
MAX_PROPS_BYTES = 4096


class ContractError(ValueError):
    """An event does not match its contract; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    type: str
    tenant: str
    occurred_at: datetime
    received_at: datetime
    data: dict[str, Any]
    trace: dict[str, str]


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def now_iso() -> str:
    """`datetime.now(UTC).isoformat()`, the same string, at a third of the cost (every hit
    needs one): the date and time up to the second are formatted once a second."""
    global _second
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)  # floored, like now()
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != seconds:
        stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")[:-6]
        cached = _second = (seconds, stamp)
    if micros:
        return f"{cached[1]}.{micros:06d}+00:00"
    return f"{cached[1]}+00:00"


def make_envelope(
    event_id: str,
    event_type: str,
    tenant: str,
    occurred_at: str,
    received_at: str,
    data: dict[str, Any],
    trace: dict[str, str] | None = None,
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": event_id,
        "type": event_type,
        "tenant": tenant,
        "occurred_at": occurred_at,
        "received_at": received_at,
        "data": data,
    }
    if trace:
        env["trace"] = trace
    return env


def envelope_dict(event: Envelope) -> dict[str, Any]:
    """A validated envelope as the JSON object it came from (timestamps re-spelt in ISO
    form): what a consumer dead-letters when it can't store an event it accepted."""
    return make_envelope(
        event.id,
        event.type,
        event.tenant,
        event.occurred_at.isoformat(),
        event.received_at.isoformat(),
        event.data,
        event.trace,
    )


def encode_batch(envelopes: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(envelopes)


def decode_batch(body: bytes) -> list[Any]:
    """The batch's items, undecoded; raises ContractError if the body is not a JSON array."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"body is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ContractError("body is not a JSON array of envelopes")
    return items


# Event ids: the canonical 8-4-4-4-12 hex spelling only. Python's uuid.UUID also takes
# `urn:uuid:`, braces and hyphens anywhere, which Postgres's uuid input refuses: an id it
# can't store would fail the whole batch's INSERT.
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Fast path for IP addresses: accepts only strings the general check below accepts too,
# and everything else still goes through that check, so what is valid does not change;
# a regex match is ~10x cheaper than ipaddress.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Dotted-quad IPv4 as ipaddress accepts it: ASCII digits, 0-255, no leading zeros.
IPV4_DOTTED = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _is_uuid(value: str) -> bool:
    return _CANONICAL_UUID.fullmatch(value) is not None


def _is_ip(value: str) -> bool:
    if IPV4_DOTTED.fullmatch(value) is not None:
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _timestamp(doc: dict[str, Any], field: str) -> datetime:
    raw = doc.get(field)
    if not isinstance(raw, str):
        raise ContractError(f"{field} must be an RFC 3339 string")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ContractError(f"{field} is not an RFC 3339 timestamp: {raw[:40]!r}") from None
    if value.tzinfo is None:
        raise ContractError(f"{field} must carry a UTC offset")
    if value.year in (1, 9999):  # only these can leave datetime's range once in UTC
        try:
            value.astimezone(UTC)  # what asyncpg does to store a timestamptz
        except OverflowError:
            raise ContractError(f"{field} is out of range in UTC: {raw[:40]!r}") from None
    return value


def _opt_str(data: dict[str, Any], field: str, limit: int) -> None:
    value = data.get(field)
    if value is None:
        return
    if not isinstance(value, str) or len(value) > limit:
        raise ContractError(f"data.{field} must be a string of at most {limit} characters")
    if "\x00" in value:  # Postgres text can't hold NUL; one would fail the whole batch
        raise ContractError(f"data.{field} contains a NUL character")


def _check_hit(data: dict[str, Any]) -> None:
    email_id = data.get("email_id")
    if not isinstance(email_id, str) or not valid_email_id(email_id):
        raise ContractError("data.email_id is missing or not a valid email id")
    _opt_str(data, "ip", 64)
    ip = data.get("ip")
    if ip is not None and not _is_ip(ip):
        raise ContractError("data.ip is not an IP address")
    _opt_str(data, "ua", MAX_UA_LEN)
    props = data.get("props")
    if props is not None:
        if not isinstance(props, dict):
            raise ContractError("data.props must be an object")
        try:
            encoded = orjson.dumps(props)
        except orjson.JSONEncodeError as exc:  # nested deeper than orjson (and jsonb) go
            raise ContractError(f"data.props can't be stored: {exc}") from None
        if len(encoded) > MAX_PROPS_BYTES:
            raise ContractError(f"data.props larger than {MAX_PROPS_BYTES} bytes")
        if b"\\u0000" in encoded:  # jsonb rejects NUL
            raise ContractError("data.props contains a NUL character")


def _check_open(data: dict[str, Any]) -> None:
    _check_hit(data)


def _check_click(data: dict[str, Any]) -> None:
    _check_hit(data)
    url = data.get("url")
    # The scheme in any case: RFC 3986 schemes are case-insensitive, and a link signed
    # before shared.signing lowercased them (`HTTPS://`) is still redirected by ingest.
    if not isinstance(url, str) or not url[:8].lower().startswith(("http://", "https://")):
        raise ContractError("data.url must be an http(s) URL")
    if len(url) > MAX_URL_LEN:
        raise ContractError(f"data.url longer than {MAX_URL_LEN}")
    _opt_str(data, "url", MAX_URL_LEN)


def _check_hints(data: dict[str, Any]) -> None:
    hints = data.get("hints")
    if hints is None:
        return
    if not isinstance(hints, dict):
        raise ContractError("data.hints must be an object")
    unknown = set(hints) - {"purpose", "dnt", "gpc"}
    if unknown:
        raise ContractError(f"data.hints has unknown fields: {', '.join(sorted(unknown))[:80]}")
    purpose = hints.get("purpose")
    if purpose is not None and (
        not isinstance(purpose, str) or len(purpose) > MAX_PURPOSE_LEN or "\x00" in purpose
    ):
        raise ContractError(f"data.hints.purpose must be a string of at most {MAX_PURPOSE_LEN}")
    for flag in ("dnt", "gpc"):
        if flag in hints and not isinstance(hints[flag], bool):
            raise ContractError(f"data.hints.{flag} must be true or false")


def _check_open_v2(data: dict[str, Any]) -> None:
    _check_hit(data)
    _check_hints(data)


def _check_click_v2(data: dict[str, Any]) -> None:
    _check_click(data)
    _check_hints(data)


def _check_email_registered(data: dict[str, Any]) -> None:
    email_id = data.get("email_id")
    if not isinstance(email_id, str) or not valid_email_id(email_id):
        raise ContractError("data.email_id is missing or not a valid email id")


def _check_metric(data: dict[str, Any]) -> None:
    if not isinstance(data.get("name"), str):
        raise ContractError("data.name must be a string")
    value = data.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError("data.value must be a number")
    labels = data.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ContractError("data.labels must be an object of strings")


def _check_metric_v2(data: dict[str, Any]) -> None:
    """`metric.v2`: samples from outside applications (shared/samples.py holds the rules)."""
    try:
        validate_metric_v2(data)
    except SampleContractError as exc:
        raise ContractError(str(exc)) from None


def _check_error_v1(data: dict[str, Any]) -> None:
    """`error.v1`: an application's error (shared/errors_contract.py holds the rules)."""
    try:
        validate_error_v1(data)
    except ErrorContractError as exc:
        raise ContractError(str(exc)) from None


def _str_map(value: Any, field: str) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ContractError(f"{field} must be an object of strings")


def _check_notification(data: dict[str, Any]) -> None:
    """One notification: a group of alerts of one rule, for one channel.

    data = {notification_id (uuid, stable across retries: the webhook-id), channel,
    channel_type, rule_id, rule_name, status (firing|resolved), group_key, group_labels,
    alerts: [{fingerprint, status, labels, annotations, starts_at, ends_at|null,
    generator_url, value|null, severity}]}
    """
    _check_notification_of(data, ALERT_STATUSES)


def _check_notification_v2(data: dict[str, Any]) -> None:
    """`alert.notification.v2`: v1's shape, status (and each alert's) firing | resolved |
    acknowledged. v1 stays valid; the alerting core publishes v2 for `acknowledged` only."""
    _check_notification_of(data, ALERT_STATUSES_V2)


def _check_notification_of(data: dict[str, Any], statuses: tuple[str, ...]) -> None:
    allowed = " or ".join(repr(s) for s in statuses)
    if not isinstance(data.get("notification_id"), str) or not _is_uuid(data["notification_id"]):
        raise ContractError("data.notification_id must be a UUID string")
    for name in ("channel", "channel_type", "rule_id", "rule_name", "group_key"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ContractError(f"data.{name} must be a non-empty string")
    if data.get("status") not in statuses:
        raise ContractError(f"data.status must be {allowed}")
    _str_map(data.get("group_labels"), "data.group_labels")
    alerts = data.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise ContractError("data.alerts must be a non-empty array")
    for i, alert in enumerate(alerts):
        where = f"data.alerts[{i}]"
        if not isinstance(alert, dict):
            raise ContractError(f"{where} must be an object")
        if not isinstance(alert.get("fingerprint"), str):
            raise ContractError(f"{where}.fingerprint must be a string")
        if alert.get("status") not in statuses:
            raise ContractError(f"{where}.status must be {allowed}")
        _str_map(alert.get("labels"), f"{where}.labels")
        _str_map(alert.get("annotations"), f"{where}.annotations")
        _timestamp(alert, "starts_at")
        if alert.get("ends_at") is not None:
            _timestamp(alert, "ends_at")
        value = alert.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ContractError(f"{where}.value must be a number or null")


CONTRACTS: dict[str, Callable[[dict[str, Any]], None]] = {
    HIT_OPEN_V1: _check_open,
    HIT_CLICK_V1: _check_click,
    HIT_OPEN_V2: _check_open_v2,
    HIT_CLICK_V2: _check_click_v2,
    EMAIL_REGISTERED_V1: _check_email_registered,
    METRIC_V1: _check_metric,
    METRIC_V2: _check_metric_v2,
    ERROR_V1: _check_error_v1,
    ALERT_NOTIFICATION_V1: _check_notification,
    ALERT_NOTIFICATION_V2: _check_notification_v2,
}


def validate_envelope(doc: Any) -> Envelope:
    """Check one envelope against its contract; raises ContractError with the reason."""
    if not isinstance(doc, dict):
        raise ContractError("envelope is not an object")
    event_id = doc.get("id")
    if not isinstance(event_id, str) or not _is_uuid(event_id):
        raise ContractError("id must be a UUID string")
    event_type = doc.get("type")
    check = CONTRACTS.get(event_type) if isinstance(event_type, str) else None
    if check is None:
        raise ContractError(f"unknown event type {str(event_type)[:40]!r}")
    tenant = doc.get("tenant")
    if not isinstance(tenant, str) or not valid_tenant(tenant):
        raise ContractError("tenant is missing or not a valid tenant id")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise ContractError("data must be an object")
    check(data)
    trace = doc.get("trace") or {}
    if not isinstance(trace, dict):
        raise ContractError("trace must be an object")
    # Positional: a third cheaper than keywords, and the writer builds one per event.
    return Envelope(
        event_id,
        event_type,  # type: ignore[arg-type]
        tenant,
        _timestamp(doc, "occurred_at"),
        _timestamp(doc, "received_at"),
        data,
        trace,
    )
