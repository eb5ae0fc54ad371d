"""The rule document's contract (`RuleInput`): what a rule's fields are, for the API, the
rules file and the stored specs alike. rules/validate.py:rule_from_doc decodes through it
and keeps only what a type cannot say: a condition or expression parsed, durations and
windows in range, RE2 patterns, templates, reserved labels, and which fields go together.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from services.alerting.contracts import (
    JSON_REF,
    LABEL_NAME,
    TEXT_SCHEMA,
    MatcherInput,
    Severity,
)

Aggregation = Literal[
    "avg", "min", "max", "sum", "count", "rate", "increase", "p50", "p95", "p99", "last"
]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]
NoDataMode = Literal["alert", "keep", "resolve"]
CHANNEL_NAME = "^[a-z0-9][a-z0-9_.-]{0,63}$"
METRIC_NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
MAX_ENTRIES = 64  # labels, annotations, matchers
MAX_VALUE = 4096  # characters of a label, annotation or matcher value

Value = Annotated[str, Meta(max_length=MAX_VALUE)]
StrMap = Annotated[
    dict[Annotated[str, Meta(pattern=LABEL_NAME)], Value], Meta(max_length=MAX_ENTRIES)
]
Matchers = (
    Annotated[list[MatcherInput], Meta(max_length=MAX_ENTRIES)]
    | Annotated[dict[Annotated[str, Meta(pattern=LABEL_NAME)], str], Meta(max_length=MAX_ENTRIES)]
)
# Text (rules/parse.py) or seconds, or null; each field's range is checked after decoding.
Duration = str | float | None


# How the document states the fields it narrows (documentation only: a fuzzer
# generating from it makes valid rules); the rest is the type's own schema.
RULE_DOC_FIELDS: dict[str, dict[str, Any]] = {
    "id": {
        "$ref": "#/components/schemas/Json",
        "description": "ignored (the path's, or a new one)",
    },
    "tenant": {"$ref": "#/components/schemas/Json", "description": "ignored (the key's tenant)"},
    "name": {
        "type": "string",
        "maxLength": 200,
        "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
    },
    "condition": {
        "type": "string",
        "maxLength": 4096,
        "pattern": (
            "^((avg|min|max|sum|count|rate|p50|p95|p99|last)[(][a-z_][a-z0-9_]{0,20}"
            '([{][a-z_]{1,10}="[a-z0-9]{0,10}"[}])?[\\[][1-9][0-9]?m[\\]][)]'
            "|[a-z_][a-z0-9_]{0,20}) "
            "(>|>=|<|<=|==|!=) [0-9]{1,5}([.][0-9]{1,3})?%?( for [1-9][0-9]?m)?$"
        ),
        "example": 'p95(api_latency{service="api"}[5m]) > 0.5 for 5m',
        "description": "shorthand: [agg(]metric[{matchers}][[window]][)] op "
        "number[%] [for duration]; 5% = 0.05; the threshold must "
        "be finite (1e999 is refused)",
    },
    "matchers": {"anyOf": [{"$ref": "#/components/schemas/Matchers"}, {"type": "null"}]},
    "expr": {
        "description": "an expression instead of metric/matchers/aggregation/window (see RuleExpr)",
        "anyOf": [{"$ref": "#/components/schemas/RuleExpr"}, {"type": "null"}],
    },
    "window": {
        "description": "1 s to 24 h (null: the default, 1 min)",
        "oneOf": [
            {"$ref": "#/components/schemas/DurationText"},
            {"type": "number", "minimum": 1, "maximum": 86400},
            {"type": "null"},
        ],
    },
    "for": {"anyOf": [{"$ref": "#/components/schemas/RuleDuration"}, {"type": "null"}]},
    "keep_firing_for": {"anyOf": [{"$ref": "#/components/schemas/RuleDuration"}, {"type": "null"}]},
    "no_data": {
        "oneOf": [
            {"type": "string", "enum": ["alert", "keep", "resolve"]},
            {
                "type": "object",
                # Other keys are ignored; like every key of a body, they hold no NUL.
                "propertyNames": TEXT_SCHEMA,
                "additionalProperties": JSON_REF,
                "properties": {
                    "mode": {
                        "type": "string",
                        "enum": ["alert", "keep", "resolve"],
                        "default": "alert",
                    },
                    "windows": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 3},
                },
            },
        ]
    },
    "labels": {
        "anyOf": [
            {
                "allOf": [
                    {"$ref": "#/components/schemas/LabelValues"},
                    {"propertyNames": {"not": {"enum": ["alertname", "severity"]}}},
                ]
            },
            {"type": "null"},
        ]
    },
    "annotations": {
        "anyOf": [{"$ref": "#/components/schemas/LabelValues"}, {"type": "null"}],
        "description": "templates: {{ value }}, {{ labels.x }}, {{ threshold "
        "}}, {{ rule }}, {{ severity }}",
    },
    "repeat_interval": {
        "description": "0 = never repeat, else at least 1 s (null: the default, 4 h)",
        "anyOf": [
            {"$ref": "#/components/schemas/DurationText"},
            {"type": "number", "enum": [0]},
            {
                "type": "number",
                "minimum": 1,
                "maximum": 31622400,
                "description": "seconds",
                "at most 366 days": None,
            },
            {"type": "null"},
        ],
    },
    "cooldown": {
        "description": "after a notification for an alert, another of the same "
        "status for that alert waits until this long after it "
        "(held, sent if still true then); 0 or null: none",
        "anyOf": [{"$ref": "#/components/schemas/RuleDuration"}, {"type": "null"}],
    },
    "group_wait": {
        "description": "0 s to 1 h; null: the service's ALERTING_GROUP_WAIT_SECONDS",
        "oneOf": [
            {"type": "string", "pattern": "^([0-9]{1,3}s?|[1-5]?[0-9]m)$"},
            {"type": "number", "minimum": 0, "maximum": 3600},
            {"type": "null"},
        ],
    },
}
RULE_DOC_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "required": ["condition"],
            "properties": {
                "condition": {"type": "string"},
                "metric": {"type": "null"},
                "matchers": {"type": "null"},
                "aggregation": {"type": "null"},
                "window": {"type": "null"},
                "op": {"type": "null"},
                "threshold": {"type": "null"},
                "for": {"type": "null"},
                "expr": {"type": "null"},
            },
        },
        {
            "required": ["metric", "op", "threshold"],
            "properties": {
                "condition": {"type": "null"},
                "metric": {"type": "string"},
                "op": {"type": "string"},
                "threshold": {"type": "number"},
                "expr": {"type": "null"},
            },
        },
        {
            "required": ["expr", "op", "threshold"],
            "properties": {
                "condition": {"type": "null"},
                "expr": {"$ref": "#/components/schemas/RuleExpr"},
                "metric": {"type": "null"},
                "matchers": {"type": "null"},
                "aggregation": {"type": "null"},
                "window": {"type": "null"},
                "op": {"type": "string"},
                "threshold": {"type": "number"},
            },
        },
    ]
}


class NoData(msgspec.Struct):
    """What a rule does when its series send nothing for `windows` windows. Other fields
    are ignored."""

    mode: NoDataMode = "alert"
    windows: float = 3  # a whole number 1..1000 (3.0 is 3, as JSON has it): checked after

    doc_schema: ClassVar[dict[str, Any]] = {
        "propertyNames": TEXT_SCHEMA,
        "additionalProperties": JSON_REF,
    }


class RuleInput(msgspec.Struct, forbid_unknown_fields=True):
    """A rule. Either `condition` (shorthand), or `metric`, `op` and `threshold` (with the
    other fields the shorthand holds), or `expr`, `op` and `threshold`; every channel
    named must exist (400 otherwise)."""

    name: Annotated[str, Meta(max_length=200)]
    condition: str | None = None
    metric: Annotated[str, Meta(pattern=METRIC_NAME)] | None = None
    matchers: Matchers | None = None
    aggregation: Aggregation | None = None
    expr: dict[str, Any] | None = None
    window: Duration = None
    op: Comparison | None = None
    threshold: float | None = None
    for_: Duration = msgspec.field(default=None, name="for")
    keep_firing_for: Duration = None
    clear_threshold: float | None = None
    no_data: NoDataMode | NoData | None = None
    severity: Severity = "warning"
    labels: StrMap | None = None
    annotations: StrMap | None = None
    channels: Annotated[list[Annotated[str, Meta(pattern=CHANNEL_NAME)]], Meta(max_length=20)] = (
        msgspec.field(default_factory=list)
    )
    repeat_interval: Duration = None
    cooldown: Duration = None
    group_wait: Duration = None
    enabled: bool = True
    id: Any = None  # ignored (the path's, or a new one)
    tenant: Any = None  # the rules file's

    doc_fields: ClassVar[dict[str, dict[str, Any]]] = RULE_DOC_FIELDS
    doc_schema: ClassVar[dict[str, Any]] = RULE_DOC_SCHEMA
