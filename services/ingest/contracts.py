"""The ingest service's typed contract: request and response bodies as msgspec Structs.

These types are the one statement of what ingest's HTTP routes take and answer:
`/v1/track` items are decoded through `Hit` (routes/track.py), `/v1/samples` items through
`PlainSample` (intake/plain.py), `/v1/errors` items through `ErrorItem` (intake/errors.py);
the answers are encoded from `Accepted` / `PartlyRefused`, and the OpenAPI document
(services/ingest/openapi.py) is generated from them. A value its type refuses is reported
with the reason the hand-written checks gave; an item with several problems may name
another of them than before (each is still refused).

What they do not decode:
- the pixel and click routes' path and query parameters: checked by the same patterns
  (shared.ids, shared.signing) without a decode step, the pixel being the hot path; the
  Structs `HitPath` and `ClickQuery` state them for the document;
- OTLP/JSON bodies: read by a walk driven by the protobuf descriptors
  (intake/otlp_json.py), the spec's own mapping; `OtlpMetricsJson` / `OtlpLogsJson`
  state the top level the document shows;
- binary bodies (protobuf, snappy): described as such by the document.

Two kinds of schema metadata, as in services/alerting/contracts.py:
- `msgspec.Meta(max_length=...)` and the types themselves: enforced when decoding;
- `extra_json_schema`, a Struct's `doc_schema` (keywords added to its component) and
  `doc_fields` (a property's schema as the document states it): documentation only,
  checked after decoding by the envelope contract (shared/contracts.py) or narrowed so
  that a fuzzer generating from the document sends valid requests.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shared.contracts import MAX_PURPOSE_LEN, MAX_UA_LEN, MAX_URL_LEN
from shared.ids import EMAIL_ID_RE, TENANT_ID_RE

# --- shared shapes -------------------------------------------------------------------

NO_NUL = "^[^\\x00]*$"
TENANT_PATTERN = f"^{TENANT_ID_RE.pattern}$"
EMAIL_ID_PATTERN = f"^{EMAIL_ID_RE.pattern}$"
RFC3339 = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?"
    "(Z|[+-][0-9]{2}:[0-9]{2})$"
)
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
LABEL_NAME = "^([a-zA-Z][a-zA-Z0-9_]*|_([a-zA-Z0-9][a-zA-Z0-9_]*)?)$"
# `{"id": ...}` needs a `ts`: what the document says of both /v1/track and /v1/errors.
ID_NEEDS_TS: dict[str, Any] = {
    "dependentSchemas": {
        "id": {"required": ["ts"], "properties": {"ts": {"type": ["number", "string"]}}}
    }
}

EmailId = Annotated[str, Meta(extra_json_schema={"pattern": EMAIL_ID_PATTERN})]
# An http(s) URL as shared/signing.py `target_problem` takes it; the pattern is the ASCII
# part of that (a URL's other characters travel percent-encoded), for the document.
ClickTarget = Annotated[
    str,
    Meta(
        description="An http or https URL with a host, at most 2048 characters, without"
        " control characters or backslashes (shared/signing.py `target_problem`); the"
        " scheme in any case. This document describes ASCII URLs without IPv6 literals (a"
        " URL's non-ASCII characters are sent percent-encoded, three bytes each, and a"
        " request line holds at most 8190 bytes).",
        extra_json_schema={
            "maxLength": MAX_URL_LEN,
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._~!$&'()*+,;=%:-]*@)?"
            "[A-Za-z0-9._~!$&'()*+,;=%-]+(:[0-9]{0,5})?([/?#][\\x20-\\x5b\\x5d-\\x7e]*)?$",
        },
    ),
]
# When it happened: RFC 3339 (checked after decoding) or epoch seconds; null: now.
When = str | float | None


def when_schema(description: str, *, nullable: bool) -> dict[str, Any]:
    """A `ts` as the document states it (msgspec would write `str | float | None` loosely)."""
    kinds: list[dict[str, Any]] = [{"type": "null"}] if nullable else []
    kinds.append({"type": "number", "minimum": 0} if nullable else {"type": "number"})
    kinds.insert(-1 if nullable else 0, {"type": "string", "pattern": RFC3339})
    return {"description": description, "oneOf": kinds}


def labels_schema(most: int, longest: int, description: str, *, nullable: bool) -> dict[str, Any]:
    """Labels as the document states them: at most `most`, values of `longest` characters."""
    return {
        "type": ["object", "null"] if nullable else "object",
        "description": description,
        "maxProperties": most,
        "propertyNames": {"maxLength": 128, "pattern": LABEL_NAME},
        "additionalProperties": {"type": "string", "maxLength": longest, "pattern": NO_NUL},
    }


class Error(msgspec.Struct):
    """Every refusal: the reason."""

    error: str


class TenantRefusal(Error):
    """403 of `/v1/track`: the indexes of the items naming another tenant than the token's."""

    items: list[Annotated[int, Meta(ge=0)]]


class RpcStatus(msgspec.Struct):
    """A `google.rpc.Status` (OTLP's refusals), in JSON."""

    code: int
    message: str


# --- /v1/track ------------------------------------------------------------------------


class Hints(msgspec.Struct, forbid_unknown_fields=True):
    """What the request said about itself (hit v2 `hints`)."""

    purpose: (
        Annotated[str, Meta(max_length=MAX_PURPOSE_LEN, extra_json_schema={"pattern": NO_NUL})]
        | None
    ) = None
    dnt: bool | UnsetType = UNSET
    gpc: bool | UnsetType = UNSET


TS_TEXT = (
    "When it happened: RFC 3339 with a UTC offset, or epoch seconds; within the last"
    " TRACK_MAX_AGE_DAYS days and at most 5 minutes ahead of the server's clock"
)


class _HitFields(msgspec.Struct, forbid_unknown_fields=True, tag_field="type", kw_only=True):
    """What every `/v1/track` item may carry. `tenant` may be left out when an ingest
    token is sent (the token's tenant); the document states it required, as a request
    without a token needs it."""

    tenant: (
        Annotated[
            str,
            Meta(
                description="may be left out when an ingest token is sent: the token's",
                extra_json_schema={"pattern": TENANT_PATTERN},
            ),
        ]
        | UnsetType
    ) = UNSET
    email_id: EmailId
    ts: When = None
    id: str | UnsetType | None = UNSET
    ua: (
        Annotated[str, Meta(max_length=MAX_UA_LEN, extra_json_schema={"pattern": NO_NUL})] | None
    ) = None
    ip: str | None = None
    props: dict[str, Any] | None = None
    hints: Hints | None = None

    doc_fields: ClassVar[dict[str, dict[str, Any]]] = {
        "ts": when_schema(TS_TEXT, nullable=False),
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "makes a retry idempotent; needs ts",
        },
        "ip": {
            "description": "an IPv4 or IPv6 address",
            "oneOf": [{"type": "string", "format": f} for f in ("ipv4", "ipv6")]
            + [{"type": "null"}],
        },
        # The envelope contract bounds props at 4096 bytes as JSON; the document states a
        # flat subset of that.
        "props": {
            "type": ["object", "null"],
            "description": "at most 4096 bytes as JSON, without NUL characters",
            "maxProperties": 16,
            "additionalProperties": {
                "type": ["string", "number", "boolean", "null"],
                "maxLength": 64,
                "pattern": NO_NUL,
            },
            "propertyNames": {"maxLength": 32, "pattern": NO_NUL},
        },
    }


class OpenHit(_HitFields, tag="open"):
    """An open: what the pixel records, sent by a server or SDK."""

    url: None = None

    doc_schema: ClassVar[dict[str, Any]] = {
        "required": ["type", "tenant", "email_id"],
        **ID_NEEDS_TS,
    }


class ClickHit(_HitFields, tag="click"):
    """A click on `url` (normalised as signed links carry it)."""

    url: ClickTarget

    doc_schema: ClassVar[dict[str, Any]] = {
        "required": ["type", "tenant", "email_id", "url"],
        **ID_NEEDS_TS,
    }


Hit = OpenHit | ClickHit
TrackBody = Annotated[list[Hit], Meta(min_length=1, max_length=1000)]


class Accepted(msgspec.Struct):
    """Every item was confirmed by the broker or fsync'd to the spool."""

    accepted: Annotated[int, Meta(ge=1)]
    rejected: Annotated[int, Meta(ge=0, le=0)]


class ItemProblem(msgspec.Struct):
    index: Annotated[int, Meta(ge=0)]
    error: str


class PartlyRefused(msgspec.Struct):
    """Some items were refused (listed by index, at most 100); the valid ones were kept."""

    accepted: Annotated[int, Meta(ge=0)]
    rejected: Annotated[int, Meta(ge=1)]
    errors: list[ItemProblem]


class SamplesPartlyRefused(PartlyRefused, omit_defaults=True):
    """As `PartlyRefused`; `limits` when a tenant limit refused some samples."""

    limits: str | UnsetType = UNSET


# --- the metric and error intake --------------------------------------------------------

SampleKind = Literal["gauge", "counter", "counter_delta", "histogram_bucket", "summary_quantile"]


class PlainSample(msgspec.Struct, forbid_unknown_fields=True):
    """One `/v1/samples` item (decoded through this type; names, labels and times checked
    after, by services/ingest/intake/plain.py). The bounds here are documentation: the
    document states a subset of what the service takes (names up to 256 characters, 64
    labels, values of 2048)."""

    name: Annotated[
        str, Meta(extra_json_schema={"maxLength": 200, "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"})
    ]
    value: Annotated[float, Meta(extra_json_schema={"minimum": -1.0e300, "maximum": 1.0e300})]
    labels: dict[str, str] | None = None
    ts: When = None
    kind: Annotated[
        SampleKind,
        Meta(
            description="`histogram_bucket` needs an `le` label, `summary_quantile` a"
            " `quantile` label"
        ),
    ] = "gauge"
    tenant: Any = None

    doc_fields: ClassVar[dict[str, dict[str, Any]]] = {
        "labels": labels_schema(
            30, 1024, "names not starting with `__`; an empty value means no label", nullable=True
        ),
        "ts": when_schema(
            "epoch seconds or RFC 3339 with an offset; at most 5 minutes ahead; null or"
            " absent, the time of receipt",
            nullable=True,
        ),
        "tenant": {"description": "ignored: the tenant is the ingest token's"},
    }


class OtlpMetricsJson(msgspec.Struct):
    """OTLP/JSON (opentelemetry-proto's JSON mapping; null is an absent field); unknown
    fields are ignored."""

    resource_metrics: list[dict[str, Any]] | None = msgspec.field(
        default=None, name="resourceMetrics"
    )


class OtlpLogsJson(msgspec.Struct):
    """OTLP/JSON (opentelemetry-proto's JSON mapping); unknown fields are ignored."""

    resource_logs: list[dict[str, Any]] | None = msgspec.field(default=None, name="resourceLogs")


Int64Text = Annotated[str, Meta(description="int64, as OTLP/JSON writes it")]


class PartialSuccess(msgspec.Struct):
    """What was refused: `rejectedDataPoints` (metrics) or `rejectedLogRecords` (logs)."""

    rejected_data_points: Int64Text | UnsetType = msgspec.field(
        default=UNSET, name="rejectedDataPoints"
    )
    rejected_log_records: Int64Text | UnsetType = msgspec.field(
        default=UNSET, name="rejectedLogRecords"
    )
    error_message: str | UnsetType = msgspec.field(default=UNSET, name="errorMessage")


class OtlpAnswer(msgspec.Struct):
    """An `ExportMetricsServiceResponse` / `ExportLogsServiceResponse` in OTLP/JSON."""

    partial_success: PartialSuccess | UnsetType = msgspec.field(
        default=UNSET, name="partialSuccess"
    )


# --- the pixel and click parameters ------------------------------------------------------


class HitPath(msgspec.Struct):
    """The path parameters of the pixel and the click (an id outside its pattern: 404)."""

    tenant: Annotated[str, Meta(pattern=TENANT_PATTERN)]
    email_id: Annotated[str, Meta(pattern=EMAIL_ID_PATTERN)]


class ClickQuery(msgspec.Struct):
    """The click's query: the target and its signature. Without `sig` a link redirects
    only to a domain on the tenant's unsigned allow-list (`INGEST_UNSIGNED_CLICK_DOMAINS`,
    none by default), so the document states it required."""

    url: ClickTarget
    sig: Annotated[
        str,
        Meta(
            pattern="^[A-Za-z0-9_-]{1,16}[.][A-Za-z0-9_-]{43}$",
            description="`<kid>.<base64url HMAC-SHA256 without padding>` over"
            " `tenant\\nemail_id\\nurl`; one that does not verify is a 400. Without it a"
            " link redirects only to a domain on the tenant's unsigned allow-list"
            " (`INGEST_UNSIGNED_CLICK_DOMAINS`, none by default).",
        ),
    ]


# Every type the document names (the types they use are found from them; the probes'
# answers are shared/probe_contracts.py's).
TYPES: tuple[Any, ...] = (
    Error,
    TenantRefusal,
    RpcStatus,
    Hit,
    Accepted,
    PartlyRefused,
    SamplesPartlyRefused,
    PlainSample,
    OtlpMetricsJson,
    OtlpLogsJson,
    OtlpAnswer,
    HitPath,
    ClickQuery,
)
