"""The paths of the alerting API's OpenAPI document, one `Op` per route, beside the
routes they describe; bodies and answers name the contract types
(services/alerting/contracts.py). services/alerting/openapi.py renders the document."""

from __future__ import annotations

from typing import Any

from services.alerting import contracts as c
from services.alerting.openapi import Op, error_answer, path_param, query, ref
from shared.openapi_gen import PROBES

UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
TEXT = ref("Text")
TIME_OR_EMPTY = {"anyOf": [ref("Time"), {"const": ""}]}
RULE_ID = (path_param("rule_id", UUID),)
FINGERPRINT = (path_param("fingerprint", {"type": "string"}),)
SILENCE_ID = (path_param("silence_id", UUID),)
CHANNEL = (path_param("name", {"type": "string"}),)
NOTIFICATION_ID = (path_param("notification_id", UUID),)
NOT_FIRING = {"409": error_answer("The alert is not firing")}
ACT: dict[str, Any] = {"body": c.Actor, "body_required": False, "errors": ("400", "401", "404")}
RANGE = (
    query("since", ref("Time"), "default: until - 24 h; before until"),
    query("until", ref("Time"), "default: now"),
)

_ALERTS = [
    Op("get", "/api/v1/openapi.yaml", "This document", ("200", "OpenAPI document", None),
       errors=(), media="application/yaml", security=[]),
    Op("get", "/api/v1/alerts", "Alerts, newest change first", ("200", "Alerts", c.Alerts),
       params=(
           query("state", ref("State"), "repeatable"),
           query("severity", ref("Severity"), "repeatable"),
           query("rule", TEXT, "rule name or id"),
           query("label", {"type": "string", "pattern": "^[^=\\u0000]+=[^\\u0000]*$",
                           "example": "service=api"},
                 "name=value on the series labels (alertname = the rule name); repeatable,"
                 " all must match"),
           query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
       )),
    Op("get", "/api/v1/alerts/stream", "Server-Sent Events of alert transitions",
       ("200", "An event stream", None), errors=("401",), media="text/event-stream",
       description="One `transition` event per committed transition of the tenant's alerts;"
       " a comment line every 15 s keeps the connection open."),
    Op("get", "/api/v1/alerts/{fingerprint}", "One alert with its transition history",
       ("200", "The alert", c.AlertDetail), errors=("400", "401", "404"),
       params=(path_param("fingerprint", {"type": "string", "pattern": "^[0-9a-f]{16}$"}),)),
    Op("post", "/api/v1/alerts/{fingerprint}/ack",
       "Acknowledge a firing alert (idempotent; repeats stop)", ("200", "The alert", c.Alert),
       params=FINGERPRINT, extra=NOT_FIRING, **ACT),
    Op("post", "/api/v1/alerts/{fingerprint}/resolve",
       "Resolve an alert by hand (idempotent; a `resolved` goes out if it was announced)",
       ("200", "The alert", c.Alert), params=FINGERPRINT, **ACT,
       description="If the condition still holds, the next evaluation starts a new episode."),
    Op("get", "/api/v1/alerts/{fingerprint}/timeline",
       "One alert's transitions and the notifications that carried it, in time order",
       ("200", "The timeline", c.Timeline), errors=("401", "404"), params=FINGERPRINT),
    Op("get", "/api/v1/activity",
       "Per rule its alerts by state and last transition; per channel its last notification"
       " and counts by status; the evaluator's figures",
       ("200", "The activity", c.Activity), errors=("401",)),
    Op("get", "/api/v1/stats", "Alert and notification statistics",
       ("200", "Statistics", c.Stats), params=RANGE),
]  # fmt: skip

_RULES = [
    Op("get", "/api/v1/rules", "The tenant's rules", ("200", "Rules by name", c.Rules),
       errors=("401",)),
    Op("post", "/api/v1/rules", "Create a rule", ("201", "Created", c.Rule),
       body="RuleInput", errors=("400", "401", "409"),
       description="Give either `condition` (shorthand) or `metric`, `op` and `threshold`."
       " Every channel named must exist. Rule names are unique per tenant."),
    Op("get", "/api/v1/rules/{rule_id}", "One rule", ("200", "The rule", c.Rule),
       errors=("400", "401", "404"), params=RULE_ID),
    Op("put", "/api/v1/rules/{rule_id}", "Replace a rule", ("200", "Replaced", c.Rule),
       body="RuleInput", errors=("400", "401", "404", "409"), params=RULE_ID,
       description="A rule that is disabled, or watches another metric or other labels"
       " now, resolves its alerts in the same transaction."),
    Op("delete", "/api/v1/rules/{rule_id}", "Delete a rule (its firing alerts are resolved"
       " first)", ("204", "Deleted", None), errors=("400", "401", "404"), params=RULE_ID),
]  # fmt: skip

_SILENCES = [
    Op("get", "/api/v1/silences", "Silences", ("200", "Silences", c.Silences),
       params=(query("active", {"type": "boolean"}, "only those in force now"),)),
    Op("post", "/api/v1/silences", "Create a silence", ("201", "Created", c.Silence),
       body=c.SilenceInput),
    Op("get", "/api/v1/silences/{silence_id}", "One silence", ("200", "The silence", c.Silence),
       errors=("400", "401", "404"), params=SILENCE_ID),
    Op("put", "/api/v1/silences/{silence_id}", "Replace a silence",
       ("200", "Replaced", c.Silence), body=c.SilenceInput, errors=("400", "401", "404"),
       params=SILENCE_ID),
    Op("delete", "/api/v1/silences/{silence_id}",
       "Delete a silence (silenced alerts fire again at the next evaluation)",
       ("204", "Deleted", None), errors=("400", "401", "404"), params=SILENCE_ID),
]  # fmt: skip

_CHANNELS = [
    Op("get", "/api/v1/channels", "Notification channels (secrets masked)",
       ("200", "Channels by name", c.Channels), errors=("401",)),
    Op("post", "/api/v1/channels", "Create a channel", ("201", "Created", c.Channel),
       body="ChannelCreate", errors=("400", "401", "409")),
    Op("get", "/api/v1/channels/{name}", "One channel (secrets masked)",
       ("200", "The channel", c.Channel), errors=("400", "401", "404"), params=CHANNEL),
    Op("put", "/api/v1/channels/{name}", "Replace a channel; without `config` (same type)"
       " the stored config and its secrets stay", ("200", "Replaced", c.Channel),
       body="ChannelReplace", errors=("400", "401", "404"), params=CHANNEL),
    Op("delete", "/api/v1/channels/{name}", "Delete a channel", ("204", "Deleted", None),
       errors=("400", "401", "404"), params=CHANNEL),
]  # fmt: skip

_NOTIFICATIONS = [  # served by the notify package (services/alerting/notify/routes.py)
    Op("get", "/api/v1/notifications",
       "The notification log (a delivery per notification and channel)",
       ("200", "Notifications", {"type": "object"}),
       params=(
           query("status", {"type": "string", "enum": ["pending", "delivered", "failed",
                                                       "refused", "skipped"]}),
           query("channel", TEXT),
           query("rule", TEXT, "rule id"),
           query("since", TIME_OR_EMPTY, "empty: no bound"),
           query("until", TIME_OR_EMPTY, "empty: no bound"),
           query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
       )),
    Op("get", "/api/v1/notifications/{notification_id}",
       "One notification with every delivery attempt (time, status, latency, error)",
       ("200", "The notification", {"type": "object"}), errors=("400", "401", "404"),
       params=NOTIFICATION_ID),
    Op("post", "/api/v1/notifications/{notification_id}/replay",
       "Send a failed notification again (same notification id / webhook-id)",
       ("202", "Queued again", None), errors=("400", "401", "404"), params=NOTIFICATION_ID,
       extra={"409": error_answer("Not in a state that can be replayed")}),
]  # fmt: skip

_AM = [
    Op("post", "/api/v2/alerts",
       "Receive alerts as an Alertmanager does (Prometheus `alerting:`, Grafana)",
       ("200", "Taken (empty body)", None),
       body={"type": "array", "maxItems": 1000, "items": ref("AmAlert")},
       security=[{"bearer": []}, {"basic": []}],
       extra={
           "413": error_answer("Body over 1 MiB"),
           "503": error_answer("This instance does not evaluate (a standby, or the database"
                               " away): send to every instance"),
       },
       description="Alertmanager's v2 receiving API. Each alert enters Belfry's lifecycle"
       " under the tenant's external rule of its `alertname` (created on first sight): one"
       " alert per label set; active until `endsAt` (or the resolve timeout after its"
       " receipt when `endsAt` is not set), resolved when `endsAt` is in the past. The API"
       " key is the bearer token, or the password of HTTP basic auth (Grafana). A body over"
       " 1 MiB is a 413. Answers 200 with an empty body, as Alertmanager does."),
]  # fmt: skip

OPERATIONS: list[Op] = [*_ALERTS, *_RULES, *_SILENCES, *_CHANNELS, *_NOTIFICATIONS, *_AM, *PROBES]
