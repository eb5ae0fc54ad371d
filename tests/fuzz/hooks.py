"""Schemathesis hooks for the fuzz run, loaded by the `st` child process
(`SCHEMATHESIS_HOOKS=tests.fuzz.hooks`).

Two rules that an OpenAPI document cannot state, applied to positive cases only (those
schemathesis promises are valid), so `positive_data_acceptance` still checks the rest:

- a click link is valid only with the signature of its tenant, email id and URL: positive
  click cases get a real one, made with the keys in `FUZZ_SIGNING_KEYS` (the service's);
- a `POST /v1/track` `ts` must lie within the last 30 days by the server's clock: positive
  items that carry a `ts` (or an `id`, which needs one) get a time of the last hour;
- the api's `from` must come before `to`, and a stats range may hold at most 3000
  buckets: positive cases get their bounds swapped, or a day bucket and a nearer `from`;
- alerting's `since` must come before `until`, and a silence must end after it starts:
  positive cases get them swapped, and a silence without a start an end at least a
  minute ahead (again right before the call: the stateful phase fills in a stored one);
- the channels a rule names must exist: positive rules name none;
- a channel PUT keeps the stored name, and the stored type unless it names one: positive
  ones carry the path's name and the type their config is for;
- a metric intake protobuf body is valid only as the message it names: positive OTLP
  and remote_write cases get a real one (tests/fuzz/intake_bodies.py); a `/v1/samples`
  `ts` may be at most 5 minutes ahead and a bucket needs its `le`: positive items get both.

Negative cases go out as generated: a forged signature or an old `ts` must be refused.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.hooks import HookContext

from services.api.timerange import MAX_BUCKETS, parse_instant, parse_scope
from shared.signing import SigningKeys, sign_click
from tests.fuzz.intake_bodies import INTAKE_PATHS, intake_case


def _positive(case: Case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


def _sign(case: Case) -> None:
    keys = SigningKeys.parse(os.environ["FUZZ_SIGNING_KEYS"])
    params, query = case.path_parameters or {}, case.query or {}
    tenant, email_id, url = params.get("tenant"), params.get("email_id"), query.get("url")
    if all(isinstance(v, str) for v in (tenant, email_id, url)):
        query["sig"] = sign_click(keys, str(tenant), str(email_id), str(url))


def _recent(index: int, raw: Any) -> Any:
    """A time of the last hour, in the form (epoch number or RFC 3339) that was drawn."""
    at = datetime.now(UTC) - timedelta(seconds=60 + 37 * index)
    return at.timestamp() if isinstance(raw, int | float) else at.isoformat()


def _track_times(case: Case) -> None:
    if not isinstance(case.body, list):
        return
    for index, item in enumerate(case.body):
        if isinstance(item, dict) and ("ts" in item or "id" in item):
            item["ts"] = _recent(index, item.get("ts"))


def _instant(raw: Any) -> datetime | None:
    try:
        return parse_instant(raw) if isinstance(raw, str) and raw else None
    except ValueError:
        return None


def _api_range(case: Case, stats: bool) -> None:
    query = case.query
    if not query:
        return
    start, end = _instant(query.get("from")), _instant(query.get("to"))
    if start is not None and end is None and start >= datetime.now(UTC) - timedelta(minutes=1):
        # `to` defaults to now: a `from` ahead of it is an empty range, a 400 by design.
        query["to"] = (start + timedelta(hours=1)).isoformat()
        end = _instant(query["to"])
    if start is not None and end is not None and start >= end:
        if start == end:
            del query["to"]
        else:
            query["from"], query["to"] = query["to"], query["from"]
    if stats and "bucket" in parse_scope(query, datetime.now(UTC))[1]:
        query["bucket"] = "day"
        if "bucket" in parse_scope(query, datetime.now(UTC))[1]:
            end = _instant(query.get("to")) or datetime.now(UTC)
            query["from"] = (end - timedelta(days=MAX_BUCKETS - 1)).isoformat()


def _ordered(doc: dict[str, Any] | None, first: str, second: str) -> None:
    """Swap two RFC 3339 values of `doc` that are not in order (drop `second` if equal)."""
    if not doc or not isinstance(doc.get(first), str) or not isinstance(doc.get(second), str):
        return
    try:
        a, b = (datetime.fromisoformat(doc[k].replace("Z", "+00:00")) for k in (first, second))
    except ValueError:
        return
    if a == b:
        del doc[second]
    elif a > b:
        doc[first], doc[second] = doc[second], doc[first]


def _since_until(query: dict[str, Any] | None) -> None:
    """Alerting stats: `since` before `until`, which is now when not given."""
    _ordered(query, "since", "until")
    if query and isinstance(query.get("since"), str) and "until" not in query:
        try:
            since = datetime.fromisoformat(query["since"].replace("Z", "+00:00"))
        except ValueError:
            return
        if since >= datetime.now(UTC):
            query["until"] = (since + timedelta(hours=1)).isoformat()


# An end without a start must be this far ahead when the hook sees it: the service's own
# `now` comes a little later.
SILENCE_MARGIN = timedelta(minutes=1)


def _instant_at(raw: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) else None
    except ValueError:
        return None


def _silence(case: Case) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    _ordered(body, "starts_at", "ends_at")
    duration = body.get("duration")
    if body.get("ends_at") is None and (
        duration is None or (isinstance(duration, int | float) and duration < 0.001)
    ):
        body["duration"] = "1h"  # alone, one under a microsecond would end as it starts
    ends = _instant_at(body.get("ends_at"))
    soon = datetime.now(UTC) + SILENCE_MARGIN
    if body.get("starts_at") is None and ends is not None and ends <= soon:
        # Without starts_at the silence starts now, so it must end later. (Not a start in
        # the past: the stateful phase reuses stored ends_at values without a start.)
        body["ends_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def _silence_write(case: Case) -> bool:
    return case.operation.path.startswith("/api/v1/silences") and case.method in ("POST", "PUT")


def _channel_put(case: Case) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    if "name" in body:
        body["name"] = (case.path_parameters or {}).get("name")
    config = body.get("config")
    if not isinstance(config, dict):
        body.pop("type", None)  # a new type needs its config
    elif "type" not in body:
        kinds = {"host": "email", "routing_key": "pagerduty"}
        body["type"] = next((k for f, k in kinds.items() if f in config), "webhook")


@schemathesis.hook
def filter_case(context: HookContext, case: Case) -> bool:
    """Positive `log` channels are not sent: only tenant belfry (the operators') may have
    one, which the document says but cannot state, and the fuzz tenant is acme. Negative
    ones still go out."""
    body = case.body
    return not (
        _positive(case)
        and case.operation.path.startswith("/api/v1/channels")
        and isinstance(body, dict)
        and body.get("type") == "log"
    )


@schemathesis.hook
def map_case(context: HookContext, case: Case) -> Case:
    path = case.operation.path
    if path in INTAKE_PATHS:
        intake_case(case, _positive(case))
        return case
    if not _positive(case):
        return case
    if path == "/{tenant}/click/{email_id}":
        _sign(case)
    elif path == "/v1/track":
        _track_times(case)
    elif path == "/{tenant}/stats" or path.startswith(("/{tenant}/export.", "/{tenant}/errors/")):
        _api_range(case, stats=path == "/{tenant}/stats")
    elif path == "/api/v1/stats":
        _since_until(case.query)
    elif _silence_write(case):
        _silence(case)
    elif path == "/api/v1/channels/{name}" and case.method == "PUT":
        _channel_put(case)
    elif path.startswith("/api/v1/rules") and isinstance(case.body, dict):
        case.body.pop("channels", None)
    return case


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    """The stateful phase fills a body from earlier answers after `map_case` ran: the same
    rules again, right before it goes out, so a positive channel PUT never names a new
    type without the config that type needs, and a positive silence never ends before it
    starts (a listed silence's `ends_at`, reused without a start, may have passed)."""
    if not _positive(case):
        return
    if case.operation.path == "/api/v1/channels/{name}" and case.method == "PUT":
        _channel_put(case)
    elif _silence_write(case):
        _silence(case)
