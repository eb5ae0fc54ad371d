"""The paths of the api's OpenAPI document, one `Op` per route, beside the routes they
describe; bodies and answers name the contract types (services/api/contracts.py,
contracts_answers.py). services/api/openapi.py renders the document."""

# ruff: noqa: E501 (descriptions read as prose, one string each)
from __future__ import annotations

from typing import Any

from services.api import contracts as c
from services.api import contracts_answers as a
from services.api.console.health import LIST_DEFAULT, LIST_MAX
from shared.errors_contract import MAX_FINGERPRINT_LEN
from shared.ids import EMAIL_ID_RE, TENANT_ID_RE
from shared.openapi_gen import PROBES, Op, path_param, query, ref

# The patterns the routes check (an id outside its pattern is a 404).
TENANT = path_param("tenant", {"type": "string", "pattern": f"^{TENANT_ID_RE.pattern}$"})
EMAIL_ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": f"^{EMAIL_ID_RE.pattern}$"}
FINGERPRINT: dict[str, Any] = {
    "type": "string",
    "pattern": f"^[A-Za-z0-9_.:-]{{1,{MAX_FINGERPRINT_LEN}}}$",
}
EMAIL_ID = path_param("email_id", EMAIL_ID_SCHEMA)
INSTANT = ref("Instant")
# Any text but a NUL, which every route refuses (services/api/http.py).
TEXT: dict[str, Any] = {"type": "string", "pattern": "^[^\\x00]*$"}
RANGE = (query("from", INSTANT), query("to", INSTANT))
READ = ("400", "401", "404", "503")
WRITE = ("400", "401", "404", "413", "503")
PAGE: dict[str, Any] = {
    "ok": ("200", "The page", {"type": "string"}),
    "media": "text/html",
    "security": [],
    "headers": {"Content-Security-Policy": {"type": "string"}},
}
EXPORT_PARAMS = (
    TENANT,
    query("from", INSTANT, "occurred_at >= from (default: no bound)"),
    query("to", INSTANT, "occurred_at < to (default: no bound); after from"),
    query("email_id", EMAIL_ID_SCHEMA),
    query("kind", {"type": "string", "enum": ["open", "click"]}),
)
EXPORT: dict[str, Any] = {
    "errors": READ,
    "params": EXPORT_PARAMS,
    "headers": {"Content-Disposition": {"type": "string"}},
}

_EMAILS = [
    Op("get", "/api/v1/openapi.yaml", "This document", ("200", "OpenAPI document", None),
       errors=(), media="application/yaml", security=[]),
    Op("post", "/{tenant}/emails", "Register an email (Little Bell's route, with Belfry's extras)",
       ("201", "Registered", c.EmailCreated), errors=WRITE, body=c.EmailInput,
       body_required=False, params=(TENANT,),
       description="The body may be empty or `null` (an email without subject or recipient)."
       " Unknown fields are ignored (Little Bell clients may send more). For each URL in"
       " `links` the answer carries its signed click URL, which saves a round trip per link."),
    Op("get", "/{tenant}/emails", "The tenant's emails, newest first", ("200", "Emails", c.Emails),
       errors=READ, params=(
           TENANT,
           query("limit", {"type": "integer", "minimum": 1, "maximum": c.MAX_LIST, "default": 100}),
           query("before", INSTANT, "the `created_at` of the last email seen (pages on); empty = none"),
       )),
    Op("get", "/{tenant}/emails/{email_id}", "One email, its pixel URL and its stats link",
       ("200", "The email", c.EmailDetail), errors=READ, params=(TENANT, EMAIL_ID)),
    Op("get", "/{tenant}/click-url/{email_id}",
       "A signed click URL for one target of a registered email (Little Bell's route)",
       ("200", "The signed link", c.ClickUrl), errors=READ, params=(
           TENANT, EMAIL_ID, {"name": "url", "in": "query", "required": True, "schema": ref("ClickTarget")},
       )),
]  # fmt: skip

_PAGES = [
    Op("get", "/{tenant}/dashboard", "The dashboard page", errors=("400", "404"), params=(TENANT,),
       description="One self-contained page for any well-formed tenant id (it holds no data and"
       " says nothing about whether the tenant exists); its script reads the key from the URL"
       " fragment (`#key=blf_...`) and fetches `/{tenant}/stats` with it.", **PAGE),
    Op("get", "/{tenant}/console/alerts", "The console's alerts & incidents page",
       errors=("400", "404"), params=(TENANT,),
       description="One self-contained page (same rules as the dashboard page: no data, strict"
       " CSP, the key in the URL fragment); its script calls `/{tenant}/console/api/...`.",
       **PAGE),
]  # fmt: skip

PROXIED = (TENANT, path_param("path", TEXT))
PROXY_ANSWER = ("200", "The alerting API's answer", None)
_PROXY = [
    Op("get", "/{tenant}/console/api/{path}",
       "The alerting API (`/api/v1/{path}`), passed through for the console", PROXY_ANSWER,
       errors=READ, params=PROXIED, extra={
           "413": {"description": "Body larger than 64 KiB"},
           "502": {"description": "The alerting service answered 5xx or too much"},
       },
       description="Only the calls the alerts view makes: GET alerts, alerts/stream"
       " (Server-Sent Events), alerts/{fingerprint}, alerts/{fingerprint}/timeline, silences,"
       " silences/{id}, rules, channels, notifications, notifications/{id}, stats, activity;"
       " POST alerts/{fingerprint}/ack|resolve, silences, notifications/{id}/replay; DELETE"
       " silences/{id}. The bearer key must be the path's tenant's (401 / 404 otherwise) and"
       " is passed on; answers are the alerting API's (see its openapi.yaml), bounded to 4 MiB;"
       " the alerting service down or slow is a 503, a 5xx or oversized answer from it a 502."),
    Op("post", "/{tenant}/console/api/{path}", "As GET (ack, resolve, silences, replay)",
       PROXY_ANSWER, errors=("401", "404", "503"), params=PROXIED),
    Op("delete", "/{tenant}/console/api/{path}", "As GET (expire a silence)",
       ("204", "Expired", None), errors=("401", "404", "503"), params=PROXIED),
]  # fmt: skip

_FIGURES = [
    Op("get", "/{tenant}/stats", "The tenant's figures over a range", ("200", "Figures", a.Stats),
       errors=READ, params=(
           TENANT, *RANGE,
           query("bucket", {"type": "string", "enum": ["hour", "day"]}, "default: hour up to 2 days, day beyond"),
           query("email_id", EMAIL_ID_SCHEMA),
       ),
       description="Events with `from <= occurred_at < to` (default: the 30 days before now),"
       " optionally of one email. `from` must be before `to`, and a range may hold at most"
       f" {a.MAX_SERIES} buckets (400 otherwise)."),
    Op("get", "/{tenant}/export.csv", "The raw events as CSV, oldest first, streamed",
       ("200", "Columns: id, occurred_at, received_at, kind, email_id, url, ip, user_agent,"
        " verdict, verdict_reason, props", {"type": "string"}), media="text/csv", **EXPORT),
    Op("get", "/{tenant}/export.ndjson",
       "The raw events as newline-delimited JSON, oldest first, streamed",
       ("200", "One JSON object per line, with the CSV's columns as keys", {"type": "string"}),
       media="application/x-ndjson", **EXPORT),
    Op("get", "/{tenant}/settings", "The privacy settings in force",
       ("200", "Settings", c.Settings), errors=READ, params=(TENANT,)),
    Op("put", "/{tenant}/settings", "Change some privacy settings; answers the settings in force",
       ("200", "Settings", c.Settings), errors=WRITE, params=(TENANT,), body=c.SettingsInput,
       body_required=False,
       description="An empty body changes nothing. Unknown settings are refused."),
]  # fmt: skip

_ERRORS = [
    Op("get", "/{tenant}/errors/stats",
       "The tenant's error events, grouped by fingerprint, over a range",
       ("200", "Groups", a.ErrorStats), errors=READ, params=(
           TENANT, *RANGE,
           query("limit", {"type": "integer", "minimum": 1, "maximum": a.MAX_GROUPS, "default": 100}),
       ),
       description="Errors with `from <= occurred_at < to` (default: the 30 days before `to`,"
       " which defaults to now), per fingerprint: count, first and last seen, the type and the"
       " latest occurrence's id and message; the `limit` largest groups by count (then"
       " fingerprint), and the range's totals. `from` must be before `to` (400 otherwise)."),
    Op("get", "/{tenant}/errors/fingerprint/{fingerprint}",
       "One fingerprint's count, first and last seen, and its latest error",
       ("200", "The group", a.ErrorGroup), errors=READ, params=(
           TENANT,
           path_param("fingerprint", FINGERPRINT),
           *RANGE,
       ),
       description="All time unless `from` / `to` bound it; 404 when it has no error there."),
    Op("get", "/{tenant}/errors/{error_id}", "One error event", ("200", "The error", a.ErrorEvent),
       errors=("401", "404", "503"),
       params=(TENANT, path_param("error_id", {"type": "string", "format": "uuid"}))),
]  # fmt: skip

QUEUE = path_param("queue", {**TEXT, "maxLength": 200}) | {
    "description": "a dead-letter queue of this topology (`<prefix>.writer.hits.dlq`, ...); any other name is a 404"
}
DEAD_LETTERS: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": LIST_MAX}
CONFIRM = query("confirm", TEXT, "the queue's name again, as the confirmation")
OPERATOR: dict[str, Any] = {
    "errors": ("400", "401", "403", "413", "503"),
    "extra": {"404": {"$ref": "#/components/responses/NoSuchQueue"}},
}
_CONSOLE = [
    Op("get", "/console/health", "The health view page (Belfry's operators)", errors=(),
       description="One self-contained page (strict CSP, no third-party assets); it holds no"
       " data. Its script reads an API key of tenant `belfry` from the URL fragment"
       " (`#key=blf_...`) and calls `/console/api/...` with it.", **PAGE),
    Op("get", "/console/api/health",
       "Every service's health and every queue's figures (tenant belfry's key)",
       ("200", "The view's data", a.ConsoleHealth), errors=("401", "403", "503"),
       description="The api's own `/health/detailed` and each other service's (API_INGEST_URL,"
       " API_WRITER_URL, API_ALERTING_URL), fetched in parallel within"
       " API_CONSOLE_TIMEOUT_SECONDS: one that refuses, hangs or answers no health document is"
       " `status: down` with a `reason`. `figures` adds the ingest's spool bytes and the"
       " writer's lag from their /metrics. `broker.queues` has every queue of the topology:"
       " depth, consumers, and `rate_per_second`, the net change of the depth since the"
       " previous look (null on the first); a queue not declared yet has `missing`."),
    Op("get", "/console/api/dead-letters/{queue}",
       "The first dead letters of a dead-letter queue, with their reasons",
       ("200", "The queue's count and its first messages", a.DeadLetters),
       errors=("400", "401", "403", "503"), extra=OPERATOR["extra"],
       params=(QUEUE, query("limit", {**DEAD_LETTERS, "default": LIST_DEFAULT})),
       description="Listing leaves them queued."),
    Op("post", "/console/api/dead-letters/{queue}/replay",
       "Send dead letters back to their work queue (confirmation required)",
       ("200", "How many went back, and where", a.Replayed), body=a.ReplayInput,
       body_required=False,
       params=(QUEUE, CONFIRM, query("limit", DEAD_LETTERS)),
       description="At most `limit` (default: all present now) messages, each acked once the"
       " broker confirmed its copy. The writer's go to the hits exchange (as `python -m"
       " services.writer dlq replay`); the others to their work queue (`<queue>` without"
       " `.dlq`); a failed notification is set pending again first. Needs `{\"confirm\": true}`"
       " as the body or `?confirm=<queue name>` (400 otherwise).", **OPERATOR),
    Op("post", "/console/api/dead-letters/{queue}/purge",
       "Delete every dead letter of the queue (confirmation required)",
       ("200", "How many were deleted", a.Purged), body=a.PurgeInput, body_required=False,
       params=(QUEUE, CONFIRM),
       description="Needs `{\"confirm\": true}` as the body or `?confirm=<queue name>` (400"
       " otherwise).", **OPERATOR),
]  # fmt: skip

OPERATIONS = [*_EMAILS, *_PAGES, *_PROXY, *_FIGURES, *_ERRORS, *_CONSOLE, *PROBES]
