"""The event contracts as types: one msgspec Struct per `data` of each event type and
version, and one envelope Struct per type, tagged by its `type` field.

msgspec checks the shape (types, required fields, lengths, patterns) in C while it
decodes; the few rules a type can't say (an IP address, an http(s) URL, no NUL for
Postgres, a timestamp that stays in range once in UTC, the size of `props`) run in
`__post_init__`, which msgspec calls during the decode, and raise the contract's reason.
`shared/contracts_reasons.py` turns msgspec's own messages into the same reasons the
hand-written checks gave, so dead-letter headers stay readable.

Unknown fields are ignored, as before the types existed (only `hints` is closed): a
producer may add a field without a new version; changing a published field's meaning or
type is a new version, never an edit of one of these classes.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from shared.errors_contract import ERROR_V1, ErrorData
from shared.samples import METRIC_V2, MetricData

HIT_OPEN_V1 = "hit.open.v1"
HIT_CLICK_V1 = "hit.click.v1"
HIT_OPEN_V2 = "hit.open.v2"
HIT_CLICK_V2 = "hit.click.v2"
EMAIL_REGISTERED_V1 = "email.registered.v1"
METRIC_V1 = "metric.v1"
ALERT_NOTIFICATION_V1 = "alert.notification.v1"
ALERT_NOTIFICATION_V2 = "alert.notification.v2"
ALERT_STATUSES = ("firing", "resolved")
# v2 adds `acknowledged`: someone acknowledged the alert in Belfry (it still fires).
ALERT_STATUSES_V2 = (*ALERT_STATUSES, "acknowledged")

MAX_PURPOSE_LEN = 64
MAX_URL_LEN = 2048
MAX_UA_LEN = 1024
MAX_IP_LEN = 64
MAX_PROPS_BYTES = 4096
# Only times in these years can leave datetime's range once in UTC.
_EDGE_YEARS = (1, 9999)

# Event ids: the canonical 8-4-4-4-12 hex spelling only. Python's uuid.UUID also takes
# `urn:uuid:`, braces and hyphens anywhere, which Postgres's uuid input refuses: an id it
# can't store would fail the whole batch's INSERT. `\Z`, not `$` (a trailing newline).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}\Z"  # shared.ids.TENANT_ID_RE
EMAIL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"  # shared.ids.EMAIL_ID_RE
# Fast path for IP addresses: accepts only strings ipaddress accepts too (dotted quads,
# ASCII digits, 0-255, no leading zeros); a regex match is ~10x cheaper than ipaddress.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_DOTTED = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_UUID = re.compile(UUID_PATTERN)

Uuid = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)]
_TENANT = re.compile(TENANT_PATTERN)
EmailId = Annotated[str, msgspec.Meta(pattern=EMAIL_ID_PATTERN)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
NO_PROPS = msgspec.Raw(b"")  # `props` absent; an explicit `null` arrives as Raw(b"null")


def is_ip(value: str) -> bool:
    if IPV4_DOTTED.fullmatch(value) is not None:
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def in_utc_range(value: datetime) -> bool:
    """False for the few times whose UTC instant leaves datetime's range (asyncpg
    converts to UTC to store a timestamptz); only years 1 and 9999 can."""
    if value.year not in _EDGE_YEARS:
        return True
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


# Values checked before, per process: tenants and client addresses repeat from hit to
# hit, and a set lookup costs a tenth of a regex match. Bounded: cleared when full.
_SEEN_MAX = 50_000
_valid_tenants: set[str] = set()
_valid_ips: set[str] = set()


def _remember(seen: set[str], value: str) -> None:
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen.add(value)


def _check_ip(ip: str) -> None:
    _no_nul(ip, "ip")
    if not is_ip(ip):
        raise ValueError("data.ip is not an IP address")
    _remember(_valid_ips, ip)


def _no_nul(value: str | None, field: str) -> None:
    if value is not None and "\x00" in value:  # Postgres text can't hold NUL
        raise ValueError(f"data.{field} contains a NUL character")


def props_json(props: msgspec.Raw) -> str | None:
    """`props` as the JSON text the writer stores (None when absent or null)."""
    if not props or props == _NULL:
        return None
    return bytes(props).decode()


_NULL = msgspec.Raw(b"null")


def _check_props(props: msgspec.Raw) -> None:
    """`props` is kept as the bytes it arrived as and stored as they are; msgspec skips
    over them unchecked, so they are read here once (UTF-8, escapes, depth) with the
    checks its dict always had, on its compact form."""
    raw = bytes(props)
    if raw == b"null":
        return
    if raw[:1] != b"{":
        raise ValueError("data.props must be an object")
    try:
        encoded = orjson.dumps(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:  # what orjson.loads of the whole body refused
        raise ValueError(f"data.props is not valid JSON: {exc}") from None
    except orjson.JSONEncodeError as exc:  # nested deeper than orjson (and jsonb) go
        raise ValueError(f"data.props can't be stored: {exc}") from None
    if len(encoded) > MAX_PROPS_BYTES:
        raise ValueError(f"data.props larger than {MAX_PROPS_BYTES} bytes")
    if b"\\u0000" in encoded:  # jsonb rejects NUL
        raise ValueError("data.props contains a NUL character")


class Hints(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """What a hit's request said about itself: a prefetch, Do Not Track, Global Privacy
    Control (ingest reads them from its headers)."""

    purpose: Annotated[str, msgspec.Meta(max_length=MAX_PURPOSE_LEN)] | None = None
    dnt: bool | UnsetType = UNSET
    gpc: bool | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.purpose is not None and "\x00" in self.purpose:
            raise ValueError(f"data.hints.purpose must be a string of at most {MAX_PURPOSE_LEN}")


class HitOpenV1(msgspec.Struct, frozen=True, gc=False):
    """`hit.open.v1` data: {email_id, ip?, ua?, props?}."""

    email_id: EmailId
    ip: Annotated[str, msgspec.Meta(max_length=MAX_IP_LEN)] | None = None
    ua: Annotated[str, msgspec.Meta(max_length=MAX_UA_LEN)] | None = None
    props: msgspec.Raw = NO_PROPS
    url: ClassVar[str | None] = None  # opens have none
    hints: ClassVar[Hints | None] = None  # v1 has none: a v1 `props.purpose` stands in

    def __post_init__(self) -> None:  # every stored hit runs this: keep it lean
        ip, ua = self.ip, self.ua
        if ip is not None and ip not in _valid_ips:
            _check_ip(ip)
        if ua is not None and "\x00" in ua:
            raise ValueError("data.ua contains a NUL character")
        if self.props:
            _check_props(self.props)


class HitClickV1(HitOpenV1, frozen=True, gc=False):
    """`hit.click.v1` data: an open's, and the `url` followed (http or https)."""

    url: str = ""  # type: ignore[misc]  # required in effect: "" is refused below

    def __post_init__(self) -> None:
        super().__post_init__()
        url = self.url
        # The scheme in any case: RFC 3986 schemes are case-insensitive, and a link signed
        # before shared.signing lowercased them (`HTTPS://`) is still redirected by ingest.
        if not url[:8].lower().startswith(("http://", "https://")):
            raise ValueError("data.url must be an http(s) URL")
        if len(url) > MAX_URL_LEN:
            raise ValueError(f"data.url longer than {MAX_URL_LEN}")
        _no_nul(url, "url")


class HitOpenV2(HitOpenV1, frozen=True, gc=False):
    """`hit.open.v2` data: v1's, and the request's `hints`."""

    hints: Hints | None = None  # type: ignore[misc]


class HitClickV2(HitClickV1, frozen=True, gc=False):
    """`hit.click.v2` data: v1's, and the request's `hints`."""

    hints: Hints | None = None  # type: ignore[misc]


class EmailRegisteredV1(msgspec.Struct, frozen=True, gc=False):
    email_id: EmailId


class MetricV1(msgspec.Struct, frozen=True, gc=False):
    """`metric.v1`: one of Belfry's own numbers (shared/selfreport.py)."""

    name: str
    value: float
    labels: dict[str, str] = {}


StrMap = dict[str, str]


class AlertV1(msgspec.Struct, frozen=True, gc=False):
    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: StrMap
    annotations: StrMap
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value is not None and not in_utc_range(value):
                raise ValueError(f"{name} is out of range in UTC: {_iso(self, name)!r}")


class AlertV2(AlertV1, frozen=True, gc=False):
    status: Literal["firing", "resolved", "acknowledged"]  # type: ignore[assignment]


class AlertNotificationV1(msgspec.Struct, frozen=True, gc=False):
    """One notification: a group of alerts of one rule, for one channel. The
    `notification_id` is stable across retries (the webhook-id)."""

    notification_id: Uuid
    channel: NonEmpty
    channel_type: NonEmpty
    rule_id: NonEmpty
    rule_name: NonEmpty
    status: Literal["firing", "resolved"]
    group_key: NonEmpty
    group_labels: StrMap
    alerts: Annotated[list[AlertV1], msgspec.Meta(min_length=1)]


class AlertNotificationV2(AlertNotificationV1, frozen=True, gc=False):
    """v1's shape; status (and each alert's) firing | resolved | acknowledged. The
    alerting core publishes v2 for `acknowledged` only."""

    status: Literal["firing", "resolved", "acknowledged"]  # type: ignore[assignment]
    alerts: Annotated[list[AlertV2], msgspec.Meta(min_length=1)]  # type: ignore[assignment]


# --- envelopes --------------------------------------------------------------------------


class Event(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """The envelope every event travels in; `data` is typed per subclass (one per type)."""

    type: ClassVar[str]
    id: Uuid
    tenant: str  # checked below (a lookup: the set of tenants seen)
    occurred_at: Timestamp
    received_at: Timestamp
    data: Any  # the subclass of each type says what
    trace: Any = None  # an object, or absent (null and other falsy values read as absent)

    def __post_init__(self) -> None:  # every event runs this: keep it lean
        trace = self.trace
        if trace.__class__ is not dict:
            if trace:
                raise ValueError("trace must be an object")
            self.trace = {}
        if self.tenant not in _valid_tenants:
            _check_tenant(self.tenant)
        if self.occurred_at.year in _EDGE_YEARS or self.received_at.year in _EDGE_YEARS:
            for name in ("occurred_at", "received_at"):
                if not in_utc_range(getattr(self, name)):
                    raise ValueError(f"{name} is out of range in UTC: {_iso(self, name)!r}")


def _check_tenant(tenant: str) -> None:
    if _TENANT.match(tenant) is None:
        raise ValueError("tenant is missing or not a valid tenant id")
    _remember(_valid_tenants, tenant)


def _iso(struct: Any, name: str) -> str:
    return str(getattr(struct, name).isoformat())[:40]


def _event(type_name: str, data_type: type) -> type[Event]:
    """The envelope class of one event type: `Event` with its tag and its `data`."""
    annotations = {"data": data_type, "type": ClassVar[str]}
    namespace = {"__annotations__": annotations, "type": type_name, "__doc__": type_name}
    return type(f"Event_{type_name.replace('.', '_')}", (Event,), namespace, tag=type_name)


DATA_TYPES: dict[str, type] = {
    HIT_OPEN_V1: HitOpenV1,
    HIT_CLICK_V1: HitClickV1,
    HIT_OPEN_V2: HitOpenV2,
    HIT_CLICK_V2: HitClickV2,
    EMAIL_REGISTERED_V1: EmailRegisteredV1,
    METRIC_V1: MetricV1,
    METRIC_V2: MetricData,
    ERROR_V1: ErrorData,
    ALERT_NOTIFICATION_V1: AlertNotificationV1,
    ALERT_NOTIFICATION_V2: AlertNotificationV2,
}
EVENT_TYPES: dict[str, type[Event]] = {name: _event(name, t) for name, t in DATA_TYPES.items()}
# One decoder per contract version: an envelope of that type, from JSON bytes.
DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()
}


def batch_decoder(types: list[str]) -> msgspec.json.Decoder[Any]:
    """A decoder of a whole `batch.v1` body made only of events of `types`, in one pass."""
    union = Union[tuple(EVENT_TYPES[t] for t in types)]  # type: ignore[valid-type]  # noqa: UP007
    return msgspec.json.Decoder(list[union])  # type: ignore[valid-type]


def is_uuid(value: str) -> bool:
    return _UUID.match(value) is not None
