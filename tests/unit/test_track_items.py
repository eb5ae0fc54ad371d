"""`build_item` of `POST /v1/track`: one request item → one validated envelope, or an
error naming what is wrong with it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.ingest.routes.track import ItemError, build_item
from shared.contracts import HIT_CLICK_V2, HIT_OPEN_V2, ContractError, validate_envelope

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
MAX_AGE = timedelta(days=30)
EVENT_ID = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"


def item(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "open", "tenant": "acme", "email_id": "em-1"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def build(**fields: Any) -> dict[str, Any]:
    return build_item(item(**fields), NOW, MAX_AGE)


def error_of(raw: Any) -> str:
    with pytest.raises((ItemError, ContractError)) as info:
        build_item(raw, NOW, MAX_AGE)
    return str(info.value)


def test_valid_open_becomes_an_envelope() -> None:
    env = build(ua="Mozilla/5.0", props={"campaign": "spring"})
    assert env["type"] == HIT_OPEN_V2
    assert env["tenant"] == "acme"
    assert env["data"] == {"email_id": "em-1", "ua": "Mozilla/5.0", "props": {"campaign": "spring"}}
    assert env["occurred_at"] == NOW.isoformat()
    assert env["received_at"] == NOW.isoformat()
    assert uuid.UUID(env["id"]).version == 7
    assert validate_envelope(env).tenant == "acme"


def test_each_item_without_id_gets_a_fresh_id() -> None:
    assert build()["id"] != build()["id"]


def test_valid_click_keeps_url() -> None:
    env = build(type="click", url="https://example.com/landing?x=1")
    assert env["type"] == HIT_CLICK_V2
    assert env["data"]["url"] == "https://example.com/landing?x=1"


def test_ip_is_normalised() -> None:
    assert build(ip="2001:DB8:0:0::1")["data"]["ip"] == "2001:db8::1"


def test_ts_as_rfc3339_with_z() -> None:
    env = build(ts="2025-03-01T11:30:00Z")
    assert env["occurred_at"] == "2025-03-01T11:30:00+00:00"
    assert env["received_at"] == NOW.isoformat()


def test_ts_as_rfc3339_with_offset_keeps_the_instant() -> None:
    env = build(ts="2025-03-01T13:30:00+02:00")
    assert datetime.fromisoformat(env["occurred_at"]) == datetime(2025, 3, 1, 11, 30, tzinfo=UTC)


def test_ts_as_epoch_seconds() -> None:
    epoch = int(datetime(2025, 2, 28, 8, 0, tzinfo=UTC).timestamp())
    assert build(ts=epoch)["occurred_at"] == "2025-02-28T08:00:00+00:00"


def test_ts_as_fractional_epoch_seconds() -> None:
    epoch = datetime(2025, 2, 28, 8, 0, tzinfo=UTC).timestamp() + 0.5
    assert build(ts=epoch)["occurred_at"] == "2025-02-28T08:00:00.500000+00:00"


def test_ts_slightly_in_the_future_is_tolerated() -> None:
    ts = (NOW + timedelta(minutes=4)).isoformat()
    assert build(ts=ts)["occurred_at"] == ts


def test_ts_too_far_in_the_future() -> None:
    assert error_of(item(ts=(NOW + timedelta(minutes=6)).isoformat())) == "ts is in the future"


def test_ts_too_old() -> None:
    old = (NOW - timedelta(days=31)).isoformat()
    assert error_of(item(ts=old)) == "ts is older than 30 days"


def test_ts_just_inside_max_age_is_accepted() -> None:
    ts = (NOW - timedelta(days=29, hours=23)).isoformat()
    assert build(ts=ts)["occurred_at"] == ts


@pytest.mark.parametrize(
    ("ts", "message"),
    [
        ("2025-03-01T11:00:00", "ts must carry a UTC offset"),
        ("yesterday", "ts is not an RFC 3339 timestamp"),
        (True, "ts must be an RFC 3339 string or epoch seconds"),
        ([2025], "ts must be an RFC 3339 string or epoch seconds"),
        (10**20, "ts is out of range"),
    ],
)
def test_bad_ts(ts: Any, message: str) -> None:
    assert error_of(item(ts=ts)) == message


def test_id_with_ts_is_kept_normalised() -> None:
    env = build(id=EVENT_ID.upper(), ts="2025-03-01T11:00:00+00:00")
    assert env["id"] == EVENT_ID
    assert env["occurred_at"] == "2025-03-01T11:00:00+00:00"


def test_same_id_and_ts_give_the_same_event() -> None:
    a = build(id=EVENT_ID, ts="2025-03-01T11:00:00Z")
    b = build(id=EVENT_ID, ts="2025-03-01T11:00:00Z")
    assert (a["id"], a["occurred_at"]) == (b["id"], b["occurred_at"])


def test_id_without_ts_is_rejected() -> None:
    assert error_of(item(id=EVENT_ID)) == "ts is required when id is given"


def test_bad_id_is_rejected() -> None:
    assert error_of(item(id="not-a-uuid", ts="2025-03-01T11:00:00Z")) == "id must be a UUID"


def test_unknown_fields_are_rejected_and_listed() -> None:
    assert error_of(item(colour="red", extra=1)) == "unknown fields: colour, extra"


def test_item_must_be_an_object() -> None:
    assert error_of(["open"]) == "item must be an object"


@pytest.mark.parametrize("kind", [None, "pageview", "OPEN", 1])
def test_type_must_be_open_or_click(kind: Any) -> None:
    assert error_of(item(type=kind)) == "type must be 'open' or 'click'"


@pytest.mark.parametrize("kind", [["open"], {"open": 1}])
def test_unhashable_type_is_an_item_error(kind: Any) -> None:
    assert error_of(item(type=kind)) == "type must be 'open' or 'click'"


def test_click_requires_url() -> None:
    assert error_of(item(type="click")) == "url is required for a click"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("javascript:alert(1)", "url must be http or https"),
        ("https:///path", "url has no host"),
        ("https://example.com/\\evil", "url contains control characters or backslashes"),
        ("https://example.com/" + "a" * 2100, "url longer than 2048 characters"),
    ],
)
def test_click_with_bad_url(url: str, message: str) -> None:
    assert error_of(item(type="click", url=url)) == message


def test_url_only_for_clicks() -> None:
    assert error_of(item(url="https://example.com/")) == "url is only for clicks"


def test_bad_ip() -> None:
    assert error_of(item(ip="300.1.1.1")) == "ip is not an IP address"


def test_tenant_required() -> None:
    assert error_of(item(tenant=...)) == "tenant is required"


def test_invalid_tenant_fails_the_contract_check() -> None:
    with pytest.raises(ContractError, match="tenant is missing or not a valid tenant id"):
        build(tenant="Acme Corp")


def test_missing_email_id_fails_the_contract_check() -> None:
    with pytest.raises(ContractError, match=r"^data\.email_id is missing"):
        build(email_id=...)


def test_props_must_be_an_object() -> None:
    with pytest.raises(ContractError, match=r"^data\.props must be an object$"):
        build(props="campaign=spring")


def test_null_optional_fields_are_left_out() -> None:
    env = build(ua=None, ip=None, props=None)
    assert env["data"] == {"email_id": "em-1"}


# The reasons below are the ones the hand-written checks gave before items were decoded
# through services/ingest/contracts.py (Hit): the types must not change them.
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": ...}, "type must be 'open' or 'click'"),
        ({"hints": {"x": 1, "dnt": True}}, "data.hints has unknown fields: x"),
        ({"hints": "prefetch"}, "data.hints must be an object"),
        ({"hints": {"dnt": "1"}}, "data.hints.dnt must be true or false"),
        ({"hints": {"gpc": None}}, "data.hints.gpc must be true or false"),
        ({"hints": {"purpose": "p" * 65}}, "data.hints.purpose must be a string of at most 64"),
        ({"ua": "u" * 1025}, "data.ua must be a string of at most 1024 characters"),
        ({"ua": 7}, "data.ua must be a string of at most 1024 characters"),
        ({"ip": 7}, "data.ip must be a string of at most 64 characters"),
        ({"email_id": None}, "data.email_id is missing or not a valid email id"),
        ({"tenant": 5}, "tenant is required"),
        ({"id": 12, "ts": "2025-03-01T11:00:00Z"}, "id must be a UUID"),
        ({"id": None}, "ts is required when id is given"),
        ({"type": "click", "url": 5}, "url is required for a click"),
        ({"url": "https://example.com/", "colour": "red"}, "unknown fields: colour"),
    ],
)
def test_reasons_are_those_of_the_hand_written_checks(fields: dict[str, Any], message: str) -> None:
    assert error_of(item(**fields)) == message


def test_a_null_url_on_an_open_is_no_url() -> None:
    assert "url" not in build(url=None)["data"]


def test_hints_are_kept_as_sent() -> None:
    env = build(hints={"purpose": "prefetch", "dnt": False})
    assert env["data"]["hints"] == {"purpose": "prefetch", "dnt": False}
