"""The api's typed contract: request and response bodies as msgspec Structs.

These types are the single statement of what the api accepts and answers: the request
bodies (an email to register, a settings change) are decoded through them
(shared/decoding.py `field_values`, in services/api/emails.py and privacy.py),
the answers encoded from them, and the OpenAPI document (services/api/openapi.py) is
generated from them. What a type cannot say stays a check next to its use (a click
target's shape: shared/signing.py `target_problem`; a whole number written as 6.0).

Schema metadata of two kinds, as in services/alerting/contracts.py: `Meta(max_length=...)`
is enforced when decoding; `extra_json_schema`, `doc_schema` and `doc_fields` only
document, where the document states a narrower subset than the service accepts (so a
fuzzer generating from it makes valid requests) or what a check after decoding enforces.
The answers built by other modules (stats, error events, the console) are typed in
contracts_answers.py, the probes' in shared/probe_contracts.py.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shared.openapi_gen import ref

Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
Uuid = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
Count = Annotated[int, Meta(ge=0)]

MAX_SUBJECT = 998  # RFC 5322's line limit: no real subject is longer
MAX_RECIPIENT = 320
MAX_LINKS = 100
MAX_LIST = 500
IpMode = Literal["full", "truncated", "none"]
MAX_RETENTION_MONTHS = 120  # ten years: anything longer is "keep" (null)
MONTHS_SCHEMA: dict[str, Any] = {
    "type": ["integer", "null"],
    "minimum": 1,
    "maximum": MAX_RETENTION_MONTHS,
}


class Error(msgspec.Struct):
    """Every error: a reason, and for invalid input the problem per field."""

    error: str
    fields: dict[str, str] | UnsetType = UNSET


# --- emails (Little Bell's routes and Belfry's) ---------------------------------------


def _optional_text(limit: int) -> dict[str, Any]:
    return {"oneOf": [{"allOf": [ref("NoNulText"), {"maxLength": limit}]}, {"type": "null"}]}


class EmailInput(msgspec.Struct):
    """An email to register; every field optional (the body may be empty or null).
    Other fields are ignored (Little Bell clients may send more); no string or key
    anywhere in the body may hold a NUL character."""

    subject: Annotated[str, Meta(max_length=MAX_SUBJECT)] | None = None
    recipient: Annotated[str, Meta(max_length=MAX_RECIPIENT)] | None = None
    # Each a click target: checked after decoding (shared/signing.py), named links[i].
    links: Annotated[list[Any], Meta(max_length=MAX_LINKS)] = msgspec.field(default_factory=list)

    doc_schema: ClassVar[dict[str, Any]] = {
        "type": ["object", "null"],
        "propertyNames": ref("NoNulText"),
        "additionalProperties": ref("NoNulJson"),
    }
    doc_fields: ClassVar[dict[str, dict[str, Any]]] = {
        "subject": _optional_text(MAX_SUBJECT),
        "recipient": _optional_text(MAX_RECIPIENT),
        "links": {"type": "array", "maxItems": MAX_LINKS, "items": ref("ClickTarget")},
    }


SIGNED = "url -> its signed click URL (when `links` were given)"


class EmailCreated(msgspec.Struct):
    email_id: Annotated[str, Meta(pattern="^[A-Za-z0-9_-]{22}$")]
    tracking_pixel_url: Annotated[
        str, Meta(description="{API_PUBLIC_URL}/{tenant}/pixel/{email_id}.gif")
    ]
    click_url_endpoint: Annotated[str, Meta(description="/{tenant}/click-url/{email_id}?url=")]
    created_at: Timestamp
    click_urls: Annotated[dict[str, str], Meta(description=SIGNED)] | UnsetType = UNSET


class Email(msgspec.Struct):
    email_id: str
    subject: str | None
    recipient: str | None
    created_at: Timestamp


class EmailDetail(Email):
    """One email, its pixel URL and its stats link."""

    tracking_pixel_url: str
    stats_url: str


class Emails(msgspec.Struct):
    emails: Annotated[list[Email], Meta(max_length=MAX_LIST)]


class ClickUrl(msgspec.Struct):
    click_url: Annotated[
        str, Meta(description="{API_PUBLIC_URL}/{tenant}/click/{email_id}?url=...&sig=...")
    ]
    original_url: str


# --- privacy settings ----------------------------------------------------------------


class SettingsInput(msgspec.Struct, forbid_unknown_fields=True):
    """The settings to change; an empty body changes nothing."""

    ip_mode: IpMode | UnsetType = UNSET
    respect_dnt: bool | UnsetType = UNSET
    # JSON has one number type: 6.0 is the integer 6 (checked after decoding).
    retention_months: Annotated[float, Meta(ge=1, le=MAX_RETENTION_MONTHS)] | UnsetType | None = (
        UNSET
    )

    doc_fields: ClassVar[dict[str, dict[str, Any]]] = {"retention_months": MONTHS_SCHEMA}


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    """The privacy settings in force."""

    ip_mode: IpMode
    respect_dnt: bool
    retention_months: Annotated[int, Meta(ge=1, le=MAX_RETENTION_MONTHS)] | None


# Every type the OpenAPI document names (the ones they use are found from them), beside
# the answers of the other modules (contracts_answers.py).
REQUESTS: tuple[type[msgspec.Struct], ...] = (EmailInput, SettingsInput)
ANSWERS: tuple[type[msgspec.Struct], ...] = (
    Error,
    EmailCreated,
    EmailDetail,
    Emails,
    ClickUrl,
    Settings,
)
