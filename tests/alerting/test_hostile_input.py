"""Hostile input through the real HTTP API (issue 13, items 6 and 8): a catastrophic
regex cannot stall the loop (RE2), patterns RE2 refuses are a 400 naming the field, and
NUL characters, out-of-range dates and non-finite or unbounded numbers are a 4xx with a
JSON reason — never a 500, and never a row stored behind a failed request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from shared.auth import create_key
from tests.alerting.conftest import (
    FakeClock,
    Send,
    StartAlerting,
    add_channel,
    auth,
    engine_of,
    metric_event,
)

# Python's `re` backtracks 2^n times on this before failing: with 40 `a`s, hours.
REDOS = "(a+)+"
HOSTILE = "a" * 40 + "!"


async def _json(resp: Any, status: int) -> Any:
    body = await resp.read()
    assert resp.status == status, body
    assert resp.content_type == "application/json", body
    return orjson.loads(body) if body else None


async def _timed(coro: Any) -> float:
    start = time.monotonic()
    await coro
    return time.monotonic() - start


@pytest.mark.timeout(20)  # with a backtracking engine the tick never ends: fail, don't hang
async def test_a_catastrophic_regex_cannot_stall_alerting(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
) -> None:
    client = await start_alerting()
    h = auth(api_key)
    redos_rule = {
        "name": "redos",
        "metric": "latency",
        "op": ">",
        "threshold": 1,
        "matchers": [{"label": "path", "op": "=~", "value": REDOS}],
    }
    await _json(await client.post("/api/v1/rules", json=redos_rule, headers=h), 201)
    plain = {"name": "any latency", "condition": "latency > 1"}
    await _json(await client.post("/api/v1/rules", json=plain, headers=h), 201)
    silence = {
        "matchers": [{"label": "path", "op": "=~", "value": REDOS}],
        "duration": "1h",
        "author": "mallory",
    }
    await _json(await client.post("/api/v1/silences", json=silence, headers=h), 201)
    await send_metrics(client, [metric_event("latency", 5, {"path": HOSTILE}, at=clock())])

    other = auth(await create_key(db, "globex"))
    tick, listing = await asyncio.gather(
        _timed(engine_of(client).tick()),
        _timed(client.get("/api/v1/rules", headers=other)),
    )
    assert tick < 2.0 and listing < 2.0, (tick, listing)
    (alert,) = (await _json(await client.get("/api/v1/alerts", headers=h), 200))["alerts"]
    # Fully anchored, as in Prometheus: (a+)+ does not match "aaa…!", so neither the
    # first rule nor the silence applies.
    assert (alert["rule"], alert["state"]) == ("any latency", "firing")
    anchored = {**silence, "matchers": [{"label": "path", "op": "=~", "value": "a+!"}]}
    created = await _json(await client.post("/api/v1/silences", json=anchored, headers=h), 201)
    clock.advance(10)
    await engine_of(client).tick()
    (alert,) = (await _json(await client.get("/api/v1/alerts", headers=h), 200))["alerts"]
    assert (alert["state"], alert["silence_id"]) == ("silenced", created["id"])


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/v1/rules",
            {
                "name": "r",
                "metric": "x",
                "op": ">",
                "threshold": 1,
                "matchers": [{"label": "a", "op": "=~", "value": r"(a)\1"}],
            },
            "matchers.0.value",
        ),
        ("/api/v1/rules", {"name": "r", "condition": 'x{a=~"(?=b)b"} > 1'}, "condition"),
        (
            "/api/v1/rules",
            {
                "name": "r",
                "metric": "x",
                "op": ">",
                "threshold": 1,
                "matchers": [{"label": "a", "op": "!~", "value": "a" * 1025}],
            },
            "matchers.0.value",
        ),
        (
            "/api/v1/silences",
            {
                "matchers": [{"label": "a", "op": "!~", "value": "(?<!x)y"}],
                "duration": "1h",
                "author": "a",
            },
            "matchers.0.value",
        ),
    ],
    ids=["rule-backreference", "condition-lookahead", "rule-too-long", "silence-lookbehind"],
)
async def test_a_pattern_re2_cannot_run_is_refused_naming_the_field(
    start_alerting: StartAlerting, api_key: str, path: str, body: dict[str, Any], field: str
) -> None:
    client = await start_alerting()
    bad = await _json(await client.post(path, json=body, headers=auth(api_key)), 400)
    assert field in bad["fields"], bad


NUL = "a\u0000b"
_RULE = {"name": "r2", "condition": "latency > 1"}
_SILENCE = {"matchers": {"service": "api"}, "duration": "1h", "author": "alice"}
_FIELDS = {"name": "r2", "metric": "x", "op": ">", "threshold": 1}
_CHANNEL = {"name": "c2", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
# (method, path, JSON body): {rule} and {silence} are the ids of a stored rule and silence.
BAD_INPUT: dict[str, tuple[str, str, Any]] = {
    "alerts ?rule=NUL": ("GET", "/api/v1/alerts?rule=%00", None),
    "alerts ?label=NUL": ("GET", "/api/v1/alerts?label=service=a%00", None),
    "alerts ?label=alertname=NUL": ("GET", "/api/v1/alerts?label=alertname=%00", None),
    "notifications ?channel=NUL": ("GET", "/api/v1/notifications?channel=%00", None),
    "notifications ?rule=NUL": ("GET", "/api/v1/notifications?rule=%00", None),
    "GET /channels/NUL": ("GET", "/api/v1/channels/%00", None),
    "PUT /channels/NUL": ("PUT", "/api/v1/channels/%00", {"enabled": True}),
    "DELETE /channels/NUL": ("DELETE", "/api/v1/channels/%00", None),
    "GET /alerts/NUL": ("GET", "/api/v1/alerts/%00", None),
    "ack by NUL": ("POST", "/api/v1/alerts/0123456789abcdef/ack", {"by": NUL}),
    "rule name NUL": ("POST", "/api/v1/rules", {**_RULE, "name": NUL}),
    "rule PUT name NUL": ("PUT", "/api/v1/rules/{rule}", {**_RULE, "name": NUL}),
    "rule label NUL": ("POST", "/api/v1/rules", {**_RULE, "labels": {"team": NUL}}),
    "rule label name NUL": ("POST", "/api/v1/rules", {**_RULE, "labels": {NUL: "x"}}),
    "rule annotation NUL": ("POST", "/api/v1/rules", {**_RULE, "annotations": {"summary": NUL}}),
    "rule matcher NUL": (
        "POST",
        "/api/v1/rules",
        {"name": "r2", "metric": "x", "op": ">", "threshold": 1, "matchers": {"a": NUL}},
    ),
    "rule condition NUL": ("POST", "/api/v1/rules", {"name": "r2", "condition": 'x{a="\0"} > 1'}),
    "silence author NUL": ("POST", "/api/v1/silences", {**_SILENCE, "author": NUL}),
    "silence comment NUL": ("POST", "/api/v1/silences", {**_SILENCE, "comment": NUL}),
    "silence matcher NUL": ("POST", "/api/v1/silences", {**_SILENCE, "matchers": {"a": NUL}}),
    "silence PUT author NUL": ("PUT", "/api/v1/silences/{silence}", {**_SILENCE, "author": NUL}),
    "channel header NUL": (
        "POST",
        "/api/v1/channels",
        {**_CHANNEL, "config": {"url": "http://127.0.0.1:9/x", "headers": {"X-A": NUL}}},
    ),
    "channel PUT url NUL": (
        "PUT",
        "/api/v1/channels/ops",
        {"type": "webhook", "config": {"url": "http://127.0.0.1:9/\u0000"}},
    ),
    "stats until year 1": ("GET", "/api/v1/stats?until=0001-01-01T00:00:00Z", None),
    "stats since before year 1": ("GET", "/api/v1/stats?since=0001-01-01T00:00:00%2B14:00", None),
    "stats until after 9999": ("GET", "/api/v1/stats?until=9999-12-31T23:59:59-14:00", None),
    "notifications since before year 1": (
        "GET",
        "/api/v1/notifications?since=0001-01-01T00:00:00%2B14:00",
        None,
    ),
    "notifications until after 9999": (
        "GET",
        "/api/v1/notifications?until=9999-12-31T23:59:59-14:00",
        None,
    ),
    "silence duration 1e16": ("POST", "/api/v1/silences", {**_SILENCE, "duration": 1e16}),
    "silence PUT ends_at and a duration past the maximum": (
        "PUT",
        "/api/v1/silences/{silence}",
        {**_SILENCE, "ends_at": "2030-01-01T00:00:00Z", "duration": 3153600001},
    ),
    "silences ?active=null": ("GET", "/api/v1/silences?active=null", None),
    "silence duration '1e400'": ("POST", "/api/v1/silences", {**_SILENCE, "duration": "1e400"}),
    "silence duration 'nan'": ("POST", "/api/v1/silences", {**_SILENCE, "duration": "nan"}),
    "silence starts before year 1": (
        "POST",
        "/api/v1/silences",
        {**_SILENCE, "starts_at": "0001-01-01T00:00:00+14:00"},
    ),
    "silence ends after 9999": (
        "POST",
        "/api/v1/silences",
        {**_SILENCE, "duration": None, "ends_at": "9999-12-31T23:59:59-14:00"},
    ),
    "silence starts 9999 + 2h": (
        "POST",
        "/api/v1/silences",
        {**_SILENCE, "starts_at": "9999-12-31T23:00:00Z", "duration": "2h"},
    ),
    "rule threshold 1e999": ("POST", "/api/v1/rules", {"name": "r2", "condition": "x > 1e999"}),
    "rule threshold -1e999%": ("POST", "/api/v1/rules", {"name": "r2", "condition": "x < -1e999%"}),
    "rule PUT threshold 1e999": (
        "PUT",
        "/api/v1/rules/{rule}",
        {"name": "r", "condition": "x > 1e999"},
    ),
    "rule threshold '1e400'": (
        "POST",
        "/api/v1/rules",
        {"name": "r2", "metric": "x", "op": ">", "threshold": "1e400"},
    ),
    "rule for '1e400'": ("POST", "/api/v1/rules", {**_RULE, "for": "1e400"}),
    "rule for 1e300": ("POST", "/api/v1/rules", {**_RULE, "for": 1e300}),
    "rule for 99999999999d": (
        "POST",
        "/api/v1/rules",
        {**_RULE, "condition": "x > 1 for 99999999999d"},
    ),
    "rule keep_firing_for 'nan'": ("POST", "/api/v1/rules", {**_RULE, "keep_firing_for": "nan"}),
    "rule repeat_interval 'inf'": ("POST", "/api/v1/rules", {**_RULE, "repeat_interval": "inf"}),
    "rule window 'nan'": (
        "POST",
        "/api/v1/rules",
        {"name": "r2", "metric": "x", "op": ">", "threshold": 1, "window": "nan"},
    ),
    "rule 100 labels": (
        "POST",
        "/api/v1/rules",
        {**_RULE, "labels": {f"l{i}": "x" for i in range(100)}},
    ),
    "rule matcher value 5000 chars": (
        "POST",
        "/api/v1/rules",
        {**_FIELDS, "matchers": {"a": "x" * 5000}},
    ),
    "rule condition 5000 chars": (
        "POST",
        "/api/v1/rules",
        {"name": "r2", "condition": "x > 1" + " " * 5000},
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
async def test_bad_input_is_a_4xx_with_a_json_reason(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str, case: str
) -> None:
    method, path, body = BAD_INPUT[case]
    await add_channel(db, "ops")
    client = await start_alerting()
    h = auth(api_key)
    rule = await _json(
        await client.post("/api/v1/rules", json={**_RULE, "name": "r"}, headers=h), 201
    )
    silence = await _json(await client.post("/api/v1/silences", json=_SILENCE, headers=h), 201)
    url = path.format(rule=rule["id"], silence=silence["id"])
    resp = await client.request(method, url, json=body, headers=h)
    raw = await resp.read()
    assert 400 <= resp.status < 500, (resp.status, raw)
    assert resp.content_type == "application/json", raw
    assert isinstance(orjson.loads(raw)["error"], str)
    # Nothing half-stored: the tenant's lists still answer, with only what was there.
    rules = (await _json(await client.get("/api/v1/rules", headers=h), 200))["rules"]
    assert [(r["name"], r["threshold"]) for r in rules] == [("r", 1)]
    silences = (await _json(await client.get("/api/v1/silences", headers=h), 200))["silences"]
    assert [s["author"] for s in silences] == ["alice"]


async def test_a_stored_rule_todays_checks_refuse_is_listed_not_a_500(
    db: asyncpg.Connection, start_alerting: StartAlerting, api_key: str
) -> None:
    """An infinite threshold stored by an older version (JSON null now) and a regex RE2
    cannot run: the list answers, shows the problems, and the rule can be deleted."""
    client = await start_alerting()
    h = auth(api_key)
    rule = await _json(await client.post("/api/v1/rules", json=_RULE, headers=h), 201)
    for spec in (
        {**_RULE, "metric": "x", "op": ">", "threshold": None},
        {
            **_RULE,
            "metric": "x",
            "op": ">",
            "threshold": 1,
            "matchers": [{"label": "a", "op": "=~", "value": "(?=a)a"}],
        },
    ):
        spec.pop("condition")
        await db.execute(
            "UPDATE alert_rules SET spec = $1::jsonb WHERE id = $2::uuid",
            orjson.dumps(spec).decode(),
            rule["id"],
        )
        (listed,) = (await _json(await client.get("/api/v1/rules", headers=h), 200))["rules"]
        assert (listed["id"], listed["name"]) == (rule["id"], "r2")
        assert set(listed["invalid"]) in ({"threshold"}, {"matchers.0.value"}), listed
        await _json(await client.get(f"/api/v1/rules/{rule['id']}", headers=h), 200)
        await engine_of(client).tick()  # the engine skips it rather than failing
    assert (await client.delete(f"/api/v1/rules/{rule['id']}", headers=h)).status == 204


async def test_a_stored_silence_re2_refuses_matches_nothing(
    db: asyncpg.Connection,
    start_alerting: StartAlerting,
    api_key: str,
    send_metrics: Send,
    clock: FakeClock,
) -> None:
    client: TestClient = await start_alerting()
    h = auth(api_key)
    await _json(await client.post("/api/v1/rules", json=_RULE, headers=h), 201)
    silence = await _json(await client.post("/api/v1/silences", json=_SILENCE, headers=h), 201)
    await db.execute(
        "UPDATE alert_silences SET matchers = $1::jsonb WHERE id = $2::uuid",
        orjson.dumps([{"label": "service", "op": "=~", "value": r"(a)\1|api"}]).decode(),
        silence["id"],
    )
    await send_metrics(client, [metric_event("latency", 5, {"service": "api"}, at=clock())])
    await engine_of(client).tick()
    (alert,) = (await _json(await client.get("/api/v1/alerts", headers=h), 200))["alerts"]
    assert alert["state"] == "firing"
