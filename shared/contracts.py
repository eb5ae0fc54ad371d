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

Producers build envelopes as plain dicts (the hot path can't afford objects). Consumers
decode them into the typed contracts of shared/contracts_types.py (msgspec Structs, one
envelope type and decoder per event type and version): `decode_event` for one decoded
JSON value, `batch_decoder` for a whole body in one pass; `validate_envelope` keeps the
older shape (`Envelope`, with `data` as the dict it came as) for consumers that read dicts.
A refusal names what is wrong (shared/contracts_reasons.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from shared.contracts_reasons import reason
from shared.contracts_types import (
    ALERT_NOTIFICATION_V1,
    ALERT_NOTIFICATION_V2,
    ALERT_STATUSES,
    ALERT_STATUSES_V2,
    DECODERS,
    EMAIL_REGISTERED_V1,
    HIT_CLICK_V1,
    HIT_CLICK_V2,
    HIT_OPEN_V1,
    HIT_OPEN_V2,
    IPV4_DOTTED,
    MAX_PROPS_BYTES,
    MAX_PURPOSE_LEN,
    MAX_UA_LEN,
    MAX_URL_LEN,
    METRIC_V1,
    Event,
    batch_decoder,
)

__all__ = [
    "ALERT_NOTIFICATION_V1",
    "ALERT_NOTIFICATION_V2",
    "ALERT_STATUSES",
    "ALERT_STATUSES_V2",
    "BATCH_V1",
    "EMAIL_REGISTERED_V1",
    "HIT_CLICK_V1",
    "HIT_CLICK_V2",
    "HIT_OPEN_V1",
    "HIT_OPEN_V2",
    "IPV4_DOTTED",
    "MAX_PROPS_BYTES",
    "MAX_PURPOSE_LEN",
    "MAX_UA_LEN",
    "MAX_URL_LEN",
    "METRIC_V1",
    "ContractError",
    "Envelope",
    "Event",
    "batch_decoder",
    "decode_batch",
    "decode_event",
    "encode_batch",
    "envelope_dict",
    "make_envelope",
    "now_iso",
    "validate_envelope",
]

BATCH_V1 = "batch.v1"


class ContractError(ValueError):
    """An event does not match its contract; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A validated envelope with `data` as a dict (see `Event` for the typed one)."""

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


def decode_event(doc: Any) -> Event:
    """One envelope (a decoded JSON value) as its typed contract; raises ContractError
    with the reason. The decoder is the one of its `type`."""
    if not isinstance(doc, dict):
        raise ContractError("envelope is not an object")
    event_type = doc.get("type")
    decoder = DECODERS.get(event_type) if isinstance(event_type, str) else None
    if decoder is None:
        raise ContractError(f"unknown event type {str(event_type)[:40]!r}")
    try:
        return decoder.decode(orjson.dumps(doc))
    except msgspec.ValidationError as exc:
        raise ContractError(reason(str(exc), doc)) from None
    except orjson.JSONEncodeError as exc:  # too deep, or not JSON at all: can't travel
        raise ContractError(_unencodable(doc, exc)) from None


def _unencodable(doc: dict[str, Any], exc: Exception) -> str:
    data = doc.get("data")
    where = "data.props" if isinstance(data, dict) and "props" in data else "envelope"
    return f"{where} can't be stored: {exc}"[:300]


def validate_envelope(doc: Any) -> Envelope:
    """Check one envelope against its contract; raises ContractError with the reason.
    The result keeps `data` as the dict it came as."""
    event = decode_event(doc)
    # Positional: a third cheaper than keywords.
    return Envelope(
        event.id,
        event.type,
        event.tenant,
        event.occurred_at,
        event.received_at,
        doc["data"],
        event.trace,
    )
