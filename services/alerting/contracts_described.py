"""Schemas the alerting OpenAPI document states that are not msgspec types yet: rules
(validated by services/alerting/rules/validate.py and exprdoc.py), channel configs
(services/alerting/notify/config.py) and the shapes they share. services/alerting/openapi.py
puts them beside the components generated from services/alerting/contracts.py; each one
typed later moves there and out of this table."""

# ruff: noqa: E501 (the fuzz-tuned patterns are one string each)
from __future__ import annotations

from typing import Any

from services.alerting.rules.matcher import AGGREGATIONS


def _channel(
    kind: str,
    properties: dict[str, Any],
    *,
    required: list[str] | None = None,
    description: str | None = None,
    config_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A channel body of one type: name, type, enabled and its `config` (`properties`,
    `required` ones, more of the config's schema in `config_extra`); any other config
    key is any JSON without a NUL, as the service accepts it."""
    config: dict[str, Any] = {"type": ["object", "null"]}
    if required:
        config["required"] = required
    config.update(config_extra or {})
    config["propertyNames"] = {"$ref": "#/components/schemas/Text"}
    config["additionalProperties"] = {"$ref": "#/components/schemas/Json"}
    config["properties"] = properties
    out: dict[str, Any] = {"type": "object", "additionalProperties": False}
    if description:
        out["description"] = description
    out["properties"] = {
        "name": {"$ref": "#/components/schemas/ChannelName"},
        "type": {"const": kind},
        "enabled": {"type": "boolean", "default": True},
        "config": config,
    }
    return out


DESCRIBED: dict[str, dict[str, Any]] = {
    "Time": {
        "type": "string",
        "pattern": "^(197[1-9]|19[89][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$",
        "description": "RFC 3339 with a UTC offset, from 1970-01-01T00:00:00Z to before "
        "9000-01-01T00:00:00Z",
    },
    "AlertTime": {
        "description": "RFC 3339 from 1970 to before 9000 (up to nine fractional digits, as Go "
        "writes them); null or Go's zero time 0001-01-01T00:00:00Z: not set",
        "anyOf": [
            {"type": "null"},
            {"type": "string", "pattern": "^0001-01-01T00:00:00([.]0{1,9})?(Z|[+-]00:00)$"},
            {
                "type": "string",
                "pattern": "^(197[1-9]|19[89][0-9]|[2-8][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$",
            },
        ],
    },
    "Text": {
        "type": "string",
        "pattern": "^[^\\u0000]*$",
        "description": "any text without NUL characters",
    },
    "LabelName": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
    "LabelValues": {
        "type": "object",
        "maxProperties": 64,
        "propertyNames": {"$ref": "#/components/schemas/LabelName"},
        "additionalProperties": {
            "allOf": [{"$ref": "#/components/schemas/Text"}, {"maxLength": 4096}]
        },
    },
    "State": {
        "type": "string",
        "enum": ["inactive", "pending", "firing", "acknowledged", "silenced", "resolved"],
    },
    "Severity": {"type": "string", "enum": ["info", "warning", "critical"]},
    "Duration": {
        "description": "Finite and not negative; at most 100 years (3153600000 s), 366 days for "
        "a rule's for, keep_firing_for, repeat_interval and cooldown",
        "oneOf": [
            {"$ref": "#/components/schemas/DurationText"},
            {
                "type": "number",
                "minimum": 0,
                "maximum": 3153600000,
                "description": "seconds (a silence's given alone must last at least a microsecond)",
            },
        ],
    },
    "DurationText": {
        "type": "string",
        "example": "5m",
        "description": "30s, 5m, 1h30m, 500ms, 2d, or seconds (90, 90.5): numbers with units "
        "ms, s, m, h,\n"
        "d, summed, surrounded by blanks or not. The pattern here is the part of "
        "that every\n"
        "duration field takes whatever its range (1 s to 16 h): a window must "
        "lie within\n"
        "1 s to 24 h, a repeat_interval be 0 or at least 1 s, a silence last "
        "more than 0.\n",
        "pattern": "^([1-9][0-9]{0,3}|[1-9][0-9]{0,2}[sm]|([1-9]|1[0-6])h([1-9][0-9]?m)?)$",
    },
    "RuleDuration": {
        "oneOf": [
            {"$ref": "#/components/schemas/DurationText"},
            {
                "type": "number",
                "minimum": 0,
                "maximum": 31622400,
                "description": "seconds",
                "at most 366 days": None,
            },
        ]
    },
    "Matchers": {
        "oneOf": [
            {
                "type": "array",
                "items": {"$ref": "#/components/schemas/MatcherInput"},
                "maxItems": 64,
            },
            {"$ref": "#/components/schemas/LabelValues", "description": "label = value"},
        ]
    },
    "RuleExpr": {
        "description": "A rule expression: a metric's window aggregation, "
        "`sum|avg|min|max|count by\n"
        "(labels)` across series, or `+ - * /` of two terms (matched on "
        "identical label\n"
        "sets; a zero divisor gives that group no value). This document "
        "describes two\n"
        "levels; deeper trees of up to 16 terms are accepted too.\n",
        "oneOf": [
            {"$ref": "#/components/schemas/ExprSelector"},
            {"$ref": "#/components/schemas/ExprAggregate"},
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["op", "left", "right"],
                "properties": {
                    "op": {"type": "string", "enum": ["+", "-", "*", "/"]},
                    "left": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/ExprSelector"},
                            {"$ref": "#/components/schemas/ExprAggregate"},
                        ]
                    },
                    "right": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/ExprSelector"},
                            {"$ref": "#/components/schemas/ExprAggregate"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["number"],
                                "properties": {"number": {"type": "number"}},
                            },
                        ]
                    },
                },
            },
        ],
    },
    "ExprSelector": {
        "type": "object",
        "additionalProperties": False,
        "required": ["metric"],
        "properties": {
            "metric": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$", "maxLength": 200},
            "matchers": {"anyOf": [{"$ref": "#/components/schemas/Matchers"}, {"type": "null"}]},
            "aggregation": {
                "type": ["string", "null"],
                "enum": [*AGGREGATIONS, None],
                "default": "last",
            },
            "window": {
                "description": "1 s to 24 h (null: the default, 1 min)",
                "oneOf": [
                    {"$ref": "#/components/schemas/DurationText"},
                    {"type": "number", "minimum": 1, "maximum": 86400},
                    {"type": "null"},
                ],
            },
        },
    },
    "ExprAggregate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["aggregate", "of"],
        "properties": {
            "aggregate": {"type": "string", "enum": ["sum", "avg", "min", "max", "count"]},
            "by": {
                "type": ["array", "null"],
                "maxItems": 16,
                "items": {"$ref": "#/components/schemas/LabelName"},
            },
            "of": {"$ref": "#/components/schemas/ExprSelector"},
        },
    },
    "ChannelInput": {
        "description": "A channel of one type with its config. Channel URLs and SMTP hosts that "
        "are\n"
        "internal addresses in any spelling (`127.1`, `2130706433`, private and "
        "IPv6-mapped\n"
        "literals, `localhost`) are refused with a 400 unless the egress "
        "allow-list admits\n"
        "them; this document describes public DNS names. Config fields other "
        "than those\n"
        "listed are kept as given.\n",
        "oneOf": [
            {"allOf": [{"$ref": "#/components/schemas/WebhookChannel"}, {"required": ["type"]}]},
            {"allOf": [{"$ref": "#/components/schemas/SlackChannel"}, {"required": ["type"]}]},
            {"allOf": [{"$ref": "#/components/schemas/EmailChannel"}, {"required": ["type"]}]},
            {
                "allOf": [
                    {"$ref": "#/components/schemas/AlertmanagerChannel"},
                    {"required": ["type"]},
                ]
            },
            {"allOf": [{"$ref": "#/components/schemas/PagerdutyChannel"}, {"required": ["type"]}]},
            {"allOf": [{"$ref": "#/components/schemas/LogChannel"}, {"required": ["type"]}]},
        ],
    },
    "ChannelCreate": {
        "allOf": [
            {"$ref": "#/components/schemas/ChannelInput"},
            {
                "type": "object",
                "required": ["name", "config"],
                "properties": {"config": {"type": "object"}},
            },
        ]
    },
    "ChannelReplace": {
        "description": "`name` is the path's (a channel cannot be renamed); without `type` the "
        "stored type\n"
        "stays, and without `config` the stored config and its secrets stay when "
        "the type\n"
        "does (a new type needs its config).\n",
        "type": "object",
        "anyOf": [
            {"$ref": "#/components/schemas/WebhookChannel"},
            {"$ref": "#/components/schemas/SlackChannel"},
            {"$ref": "#/components/schemas/EmailChannel"},
            {"$ref": "#/components/schemas/AlertmanagerChannel"},
            {"$ref": "#/components/schemas/PagerdutyChannel"},
            {"allOf": [{"$ref": "#/components/schemas/LogChannel"}, {"required": ["type"]}]},
        ],
    },
    "ChannelName": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"},
    "PublicUrl": {
        "type": "string",
        "maxLength": 2048,
        "pattern": "^https?://[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,20}){0,3}\\.(com|net|org|io)(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~%/-]{0,100})?$",
    },
    "Headers": {
        "type": ["object", "null"],
        "maxProperties": 20,
        "description": "custom headers (not Content-Type, Host, User-Agent, webhook-*, "
        "traceparent and the like)",
        "propertyNames": {"type": "string", "pattern": "^X-[A-Za-z0-9-]{1,60}$"},
        "additionalProperties": {
            "type": "string",
            "maxLength": 4096,
            "pattern": "^[^\\r\\n\\u0000]*$",
        },
    },
    "Email": {
        "type": "string",
        "maxLength": 200,
        "pattern": "^[A-Za-z0-9._%+-]{1,30}@[a-z0-9-]{1,30}(\\.[a-z0-9-]{1,30}){0,2}\\.[a-z]{2,10}$",
    },
    "Json": {
        "description": "Any JSON value without a NUL character in any string or key",
        "anyOf": [
            {"$ref": "#/components/schemas/Text"},
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": {"$ref": "#/components/schemas/Json"}},
            {
                "type": "object",
                "propertyNames": {"$ref": "#/components/schemas/Text"},
                "additionalProperties": {"$ref": "#/components/schemas/Json"},
            },
        ],
    },
    "WebhookChannel": _channel(
        "webhook",
        {
            "url": {"$ref": "#/components/schemas/PublicUrl"},
            "secrets": {
                "type": ["array", "null"],
                "maxItems": 5,
                "description": "Standard Webhooks secrets, `whsec_` + base64 of 24 to 64 bytes; every one signs each message",
                "items": {"type": "string", "pattern": "^whsec_([A-Za-z0-9+/]{4}){8,16}$"},
            },
            "headers": {"$ref": "#/components/schemas/Headers"},
        },
        required=["url"],
    ),
    "SlackChannel": _channel(
        "slack",
        {
            "url": {
                "$ref": "#/components/schemas/PublicUrl",
                "description": "the incoming-webhook URL (its path is the secret)",
            }
        },
        required=["url"],
    ),
    "AlertmanagerChannel": _channel(
        "alertmanager",
        {
            "url": {
                "$ref": "#/components/schemas/PublicUrl",
                "description": "the Alertmanager base URL",
            },
            "headers": {"$ref": "#/components/schemas/Headers"},
        },
        required=["url"],
    ),
    "PagerdutyChannel": _channel(
        "pagerduty",
        {
            "routing_key": {
                "type": "string",
                "pattern": "^[A-Za-z0-9]{32}$",
                "description": "the integration's routing key (a secret: shown as *** once stored)",
            },
            "url": {
                "anyOf": [{"$ref": "#/components/schemas/PublicUrl"}, {"type": "null"}],
                "description": "events URL; null or absent: ALERTING_PAGERDUTY_EVENTS_URL (https://events.pagerduty.com/v2/enqueue)",
            },
            "severities": {
                "type": ["object", "null"],
                "description": "Belfry severity to PagerDuty severity; unset ones map to the same name",
                "additionalProperties": False,
                "properties": {
                    "critical": {
                        "type": "string",
                        "enum": ["critical", "error", "warning", "info"],
                    },
                    "warning": {"type": "string", "enum": ["critical", "error", "warning", "info"]},
                    "info": {"type": "string", "enum": ["critical", "error", "warning", "info"]},
                },
            },
            "source": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[^\\u0000]*$",
                "description": "payload.source; default the alert's instance or service label, else belfry",
            },
        },
        required=["routing_key"],
        description="PagerDuty Events API v2, one event per alert (dedup_key = the alert's fingerprint; trigger on firing, resolve on resolved)",
    ),
    "LogChannel": _channel(
        "log",
        {
            "level": {
                "type": ["string", "null"],
                "enum": ["info", "warning", "error", None],
                "default": "warning",
            }
        },
        description="each notification as one JSON line in the alerting service's own log; only tenant belfry (the operators') may create one: any other tenant gets a 400 on type",
    ),
    "EmailChannel": _channel(
        "email",
        {
            "host": {
                "type": "string",
                "pattern": "^[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,20}){0,3}\\.(com|net|org|io)$",
                "description": "SMTP host name or address",
            },
            "port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
            "tls": {
                "type": "string",
                "enum": ["starttls", "implicit", "none"],
                "default": "starttls",
            },
            "verify_tls": {"type": ["boolean", "null"]},
            "username": {"allOf": [{"$ref": "#/components/schemas/Text"}, {"maxLength": 512}]},
            "password": {"allOf": [{"$ref": "#/components/schemas/Text"}, {"maxLength": 512}]},
            "from": {"$ref": "#/components/schemas/Email"},
            "to": {
                "oneOf": [
                    {"$ref": "#/components/schemas/Email"},
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 50,
                        "items": {"$ref": "#/components/schemas/Email"},
                    },
                ]
            },
        },
        required=["host", "from", "to"],
        config_extra={
            "description": "username and password go together",
            "anyOf": [
                {"required": ["username", "password"]},
                {"not": {"anyOf": [{"required": ["username"]}, {"required": ["password"]}]}},
            ],
        },
    ),
}
