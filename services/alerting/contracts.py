"""The alerting API's typed contract: request and response bodies as msgspec Structs.

These types are the single statement of what the API accepts and answers: request bodies
are decoded through them (`decode`), responses encoded from them (`encoded`), and the
OpenAPI document (services/alerting/openapi.py) is generated from them.

What a type cannot say stays a post-decode check next to its use (a condition parsed by
rules/parse.py, an RE2 pattern compiled, a duration's range, ends_at after starts_at);
`decode` reports every field's problem at once in today's `{"error", "fields"}` shape.

Two kinds of schema metadata:
- `msgspec.Meta(pattern=..., max_length=...)`: enforced when decoding.
- `extra_json_schema` / a Struct's `doc_schema`: documentation only. Where the document
  describes a narrower subset than the service accepts (so a fuzzer generating from it
  makes valid requests), that narrowing is documentation, never validation.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

T = TypeVar("T", bound=msgspec.Struct)

# --- shared shapes -------------------------------------------------------------------

NO_NUL = "^[^\\u0000]*$"
TEXT_SCHEMA: dict[str, Any] = {"type": "string", "pattern": NO_NUL}
# NUL characters are refused for every body before decoding (routes/common.py), so
# this is the document's statement of that rule, not a second check.
Text = Annotated[str, Meta(extra_json_schema={"pattern": NO_NUL})]
NonBlank = Annotated[
    str,
    Meta(
        max_length=200,
        extra_json_schema={"pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"},
    ),
]
LABEL_NAME = "^[a-zA-Z_][a-zA-Z0-9_]*$"
LabelName = Annotated[str, Meta(pattern=LABEL_NAME)]
LabelValue = Annotated[str, Meta(max_length=4096, extra_json_schema={"pattern": NO_NUL})]
LabelValues = Annotated[
    dict[LabelName, LabelValue],
    Meta(max_length=64, extra_json_schema={"propertyNames": {"pattern": LABEL_NAME}}),
]
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
State = Literal["inactive", "pending", "firing", "acknowledged", "silenced", "resolved"]
Severity = Literal["info", "warning", "critical"]
MatchOp = Literal["=", "!=", "=~", "!~"]
# Any JSON value without NUL in any string or key (recursive: by reference).
JSON_REF: dict[str, Any] = {"$ref": "#/components/schemas/Json"}
# RFC 3339 with an offset, 1970 to before 9000: what the service accepts, narrowed to
# the dates every month has (the bound and the calendar are checked after decoding).
TIME_PATTERN = (
    "^(197[1-9]|19[89][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$"
)
Time = Annotated[
    str,
    Meta(
        description="RFC 3339 with a UTC offset, from 1970-01-01T00:00:00Z to before"
        " 9000-01-01T00:00:00Z",
        extra_json_schema={"pattern": TIME_PATTERN},
    ),
]
DURATION_TEXT: dict[str, Any] = {
    "type": "string",
    "pattern": "^([1-9][0-9]{0,3}|[1-9][0-9]{0,2}[sm]|([1-9]|1[0-6])h([1-9][0-9]?m)?)$",
    "description": "30s, 5m, 1h30m, 500ms, 2d, or seconds (90, 90.5): numbers with units"
    " ms, s, m, h, d, summed. The pattern here is the part of that every duration field"
    " takes whatever its range (1 s to 16 h).",
}
# A duration, or null (not given): text (rules/parse.py) or seconds; its range is checked
# after decoding.
Duration = str | float | None
# How the document states it (a Struct's `doc_fields`: msgspec writes a union's own anyOf).
DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        DURATION_TEXT,
        {"type": "number", "minimum": 0, "maximum": 3153600000},
        {"type": "null"},
    ]
}


class Error(msgspec.Struct):
    """Every error: a reason, and for invalid input the problem per field path."""

    error: str
    fields: dict[str, str] | None = None


# --- decoding ------------------------------------------------------------------------


def encoded(value: Any) -> Any:
    """A response value (Structs inside) as plain JSON data."""
    return msgspec.to_builtins(value)


# --- silences ------------------------------------------------------------------------


class MatcherInput(msgspec.Struct):
    """A label matcher. Other fields are ignored."""

    label: LabelName
    value: Annotated[
        str,
        Meta(
            extra_json_schema={
                "pattern": NO_NUL,
                "maxLength": 4096,
                "description": "`=~` and `!~`: an RE2 pattern (Prometheus and Alertmanager"
                " syntax) of at most 1024 characters that must match the whole value;"
                " what RE2 cannot run (backreferences, lookarounds) is refused with a 400"
                " naming the field.",
            }
        ),
    ]
    op: MatchOp = "="

    doc_schema: ClassVar[dict[str, Any]] = {
        "propertyNames": TEXT_SCHEMA,
        "additionalProperties": JSON_REF,
        "anyOf": [
            {"properties": {"op": {"enum": ["=", "!="]}}},
            {
                "required": ["op"],
                "properties": {
                    "op": {"enum": ["=~", "!~"]},
                    "value": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9_ -]{0,100}([.][*+])?$",
                        "description": "this document describes literal text with an"
                        " optional trailing .* or .+",
                    },
                },
            },
        ],
    }


class StoredMatcher(msgspec.Struct):
    label: str
    op: MatchOp
    value: str


class SilenceInput(msgspec.Struct, forbid_unknown_fields=True):
    """A silence: alerts whose labels all match are silenced from starts_at to ends_at
    (or for `duration`; ends_at wins)."""

    matchers: Annotated[
        Annotated[list[MatcherInput], Meta(max_length=64)] | LabelValues,
        Meta(
            extra_json_schema={
                "oneOf": [
                    {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/MatcherInput"},
                        "minItems": 1,
                        "maxItems": 64,
                    },
                    {
                        "type": "object",
                        "minProperties": 1,
                        "maxProperties": 64,
                        "propertyNames": {"pattern": LABEL_NAME},
                        "additionalProperties": {
                            "type": "string",
                            "maxLength": 4096,
                            "pattern": NO_NUL,
                        },
                    },
                ]
            }
        ),
    ]
    author: NonBlank
    starts_at: Annotated[Time | None, Meta(description="default (or null): now")] = None
    ends_at: Annotated[Time | None, Meta(description="after starts_at; or give duration")] = None
    duration: Duration = None
    comment: Annotated[str, Meta(max_length=2000, extra_json_schema={"pattern": NO_NUL})] = ""

    doc_schema: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": ["ends_at"], "properties": {"ends_at": {"type": "string"}}},
            {"required": ["duration"], "properties": {"duration": {"type": ["string", "number"]}}},
        ]
    }
    doc_fields: ClassVar[dict[str, dict[str, Any]]] = {"duration": DURATION_SCHEMA}


class Silence(msgspec.Struct):
    id: Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
    matchers: list[StoredMatcher]
    starts_at: Timestamp
    ends_at: Timestamp
    author: str
    comment: str
    state: Literal["pending", "active", "expired"]
    created_at: Timestamp
    updated_at: Timestamp


class Silences(msgspec.Struct):
    silences: list[Silence]


# --- alerts --------------------------------------------------------------------------


class Actor(msgspec.Struct):
    """Who acknowledges or resolves. Other fields are ignored."""

    by: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=200,
            description="who acts (default: api)",
            extra_json_schema={"pattern": NO_NUL},
        ),
    ] = "api"

    doc_schema: ClassVar[dict[str, Any]] = {
        "propertyNames": TEXT_SCHEMA,
        "additionalProperties": JSON_REF,
    }


class Alert(msgspec.Struct):
    fingerprint: str
    rule_id: Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
    rule: str
    state: State
    severity: Severity
    labels: Annotated[
        dict[str, str], Meta(description="alertname, severity, rule labels and series labels")
    ]
    series_labels: dict[str, str]
    annotations: Annotated[
        dict[str, str],
        Meta(description="the rule's annotations rendered at the alert's latest change"),
    ]
    value: float | None
    no_data: Annotated[
        bool, Meta(description="the series has sent no sample for the rule's no_data windows")
    ]
    pending_since: Timestamp | None
    fired_at: Timestamp | None
    resolved_at: Timestamp | None
    last_notified_at: Timestamp | None
    announced: Annotated[
        bool, Meta(description="a firing notification went out and no resolved yet")
    ]
    acknowledged_by: str | None
    acknowledged_at: Timestamp | None
    silence_id: str | None
    created_at: Timestamp
    updated_at: Timestamp


class Transition(msgspec.Struct):
    from_: State = msgspec.field(name="from")
    to: State
    at: Timestamp
    value: float | None
    reason: str
    actor: str | None


class AlertDetail(Alert):
    """An alert with its transition history, oldest first."""

    history: list[Transition]


class Alerts(msgspec.Struct):
    alerts: list[Alert]


# --- channels, statistics, the console's views (responses) ---------------------------

ChannelType = Literal["webhook", "slack", "email", "alertmanager", "pagerduty", "log"]


CHANNEL_NAME = "^[a-z0-9][a-z0-9_.-]{0,63}$"


class ChannelBody(msgspec.Struct, forbid_unknown_fields=True):
    """A channel's fields as POST (name required) and PUT (name, if given, the path's;
    type and config default to the stored ones) take them. The config of each type is
    checked by services/alerting/notify/config.py:validate_channel_config (documented as
    ChannelCreate / ChannelReplace)."""

    name: Annotated[str, Meta(pattern=CHANNEL_NAME)] | None = None
    type: str | None = None  # one of ChannelType: validate_channel_config says which
    config: dict[str, Any] | None = None
    enabled: bool = True


class Channel(msgspec.Struct):
    name: Annotated[str, Meta(pattern=CHANNEL_NAME)]
    type: ChannelType
    config: Annotated[dict[str, Any], Meta(description="as given, with secrets masked (***)")]
    enabled: bool
    created_at: Timestamp
    updated_at: Timestamp


class Channels(msgspec.Struct):
    channels: list[Channel]


class StateSeverityCount(msgspec.Struct):
    state: str
    severity: str
    count: int


class AlertCounts(msgspec.Struct):
    """Counts now, by state and by severity."""

    by_state: dict[str, int]
    by_severity: dict[str, int]
    by_state_and_severity: list[StateSeverityCount]


class NotificationCount(msgspec.Struct):
    channel: str
    channel_type: str
    outcome: str
    count: int


class Stats(msgspec.Struct):
    since: Timestamp
    until: Timestamp
    alerts: AlertCounts
    transitions: Annotated[
        dict[str, int], Meta(description="transitions in the range, by state entered")
    ]
    mttr_seconds: Annotated[
        float | None, Meta(description="mean firing → resolved of episodes resolved in the range")
    ]
    mtbf_seconds: Annotated[
        float | None,
        Meta(description="mean resolved → next firing of one alert, for firings in the range"),
    ]
    notifications: list[NotificationCount]


class TimelineEvent(msgspec.Struct):
    """A transition (from, to, value, reason, actor) or a notification (channel, status,
    every delivery attempt in `tries`)."""

    kind: Literal["transition", "notification"]
    at: Timestamp


class Timeline(msgspec.Struct):
    fingerprint: str
    events: list[TimelineEvent]


class Evaluation(msgspec.Struct):
    interval_seconds: float
    ticks: int
    last_evaluated_at: Timestamp | None
    last_error: str | None


class RuleActivity(msgspec.Struct):
    id: str
    name: str | None
    enabled: bool
    severity: str | None
    alerts: dict[str, int]
    last_transition_at: Timestamp | None


class ChannelActivity(msgspec.Struct):
    name: str
    type: str
    enabled: bool
    last_notification: dict[str, Any] | None
    counts: dict[str, int]


class Activity(msgspec.Struct):
    evaluation: Evaluation
    rules: list[RuleActivity]
    channels: list[ChannelActivity]
    since: Timestamp
    until: Timestamp
    fired_by_severity: dict[str, int]


class StoredNoData(msgspec.Struct):
    mode: Literal["alert", "keep", "resolve"]
    windows: int


Seconds = Annotated[float, Meta(description="seconds")]


class Rule(msgspec.Struct):
    """A stored rule, in explicit form plus its shorthand `condition`. A stored rule that
    today's checks refuse (written by an older version) has only id, name, enabled (false)
    and `invalid`, the problem per field: it is not evaluated; replace or delete it."""

    id: Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
    name: str
    enabled: bool
    source: Annotated[
        Literal["api", "file", "external"],
        Meta(description="external: made for an alertname received on /api/v2/alerts"),
    ]
    created_at: Timestamp
    updated_at: Timestamp
    condition: Annotated[str, Meta(description="the rule in shorthand")] | UnsetType = UNSET
    metric: Annotated[str | None, Meta(description="null for an expression rule")] | UnsetType = (
        UNSET
    )
    matchers: list[StoredMatcher] | UnsetType | None = UNSET
    aggregation: str | UnsetType | None = UNSET
    window: Seconds | UnsetType | None = UNSET
    expr: dict[str, Any] | UnsetType | None = UNSET  # RuleExpr's shapes, windows in seconds
    op: Literal[">", ">=", "<", "<=", "==", "!="] | UnsetType = UNSET
    threshold: float | UnsetType = UNSET
    for_: Seconds | UnsetType = msgspec.field(default=UNSET, name="for")
    keep_firing_for: Seconds | UnsetType = UNSET
    clear_threshold: float | UnsetType | None = UNSET
    no_data: StoredNoData | UnsetType = UNSET
    severity: Severity | UnsetType = UNSET
    labels: dict[str, str] | UnsetType = UNSET
    annotations: dict[str, str] | UnsetType = UNSET
    channels: list[str] | UnsetType = UNSET
    repeat_interval: Seconds | UnsetType = UNSET
    cooldown: Seconds | UnsetType = UNSET
    group_wait: (
        Annotated[
            float | None,
            Meta(description="seconds; null: the service's ALERTING_GROUP_WAIT_SECONDS"),
        ]
        | UnsetType
    ) = UNSET
    invalid: dict[str, str] | UnsetType = UNSET


class Rules(msgspec.Struct):
    rules: list[Rule]


class AmAlert(msgspec.Struct):
    """One alert of Alertmanager's v2 API (what Prometheus and Grafana send)."""

    labels: Annotated[
        dict[str, str],
        Meta(
            extra_json_schema={
                "allOf": [
                    {"$ref": "#/components/schemas/LabelValues"},
                    {"propertyNames": {"maxLength": 4096}},
                ],
                "required": ["alertname"],
                "properties": {
                    "alertname": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        "pattern": "^[^\\u0000]*[^\\u0000\\s][^\\u0000]*$",
                    }
                },
            }
        ),
    ]
    annotations: Annotated[
        dict[str, str] | None,
        Meta(
            extra_json_schema={
                "maxProperties": 64,
                "propertyNames": {"maxLength": 4096, "pattern": NO_NUL},
                "additionalProperties": {"type": "string", "maxLength": 4096, "pattern": NO_NUL},
            }
        ),
    ] = None
    startsAt: Annotated[
        str | None, Meta(extra_json_schema={"$ref": "#/components/schemas/AlertTime"})
    ] = None
    endsAt: Annotated[
        str | None, Meta(extra_json_schema={"$ref": "#/components/schemas/AlertTime"})
    ] = None
    generatorURL: Annotated[
        str | None, Meta(extra_json_schema={"maxLength": 4096, "pattern": NO_NUL})
    ] = None


# Every type the OpenAPI document names (the ones they use are found from them).
TYPES: tuple[type[msgspec.Struct], ...] = (
    Error,
    Rules,
    SilenceInput,
    Silences,
    Actor,
    Alerts,
    AlertDetail,
    Channels,
    Stats,
    Timeline,
    Activity,
    AmAlert,
)
