"""Event contracts: `validate_envelope` accepts good hits and names what is wrong with bad
ones; `decode_batch` accepts only a JSON array. Every refusal is also checked against the
one-pass batch decoder (the writer's fast path): the two must never disagree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contracts import (
    ALERT_NOTIFICATION_V1,
    ALERT_NOTIFICATION_V2,
    EMAIL_REGISTERED_V1,
    HIT_CLICK_V1,
    HIT_CLICK_V2,
    HIT_OPEN_V1,
    HIT_OPEN_V2,
    MAX_PROPS_BYTES,
    MAX_UA_LEN,
    METRIC_V1,
    ContractError,
    Event,
    batch_decoder,
    decode_batch,
    decode_event,
    encode_batch,
    envelope_dict,
    make_envelope,
    validate_envelope,
)

EVENT_ID = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"
OCCURRED = "2025-03-01T12:00:00+00:00"
RECEIVED = "2025-03-01T12:00:01.250000+00:00"


def envelope(event_type: str = HIT_OPEN_V1, **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"email_id": "em-1", **data}
    if event_type == HIT_CLICK_V1:
        body.setdefault("url", "https://example.com/a")
    return make_envelope(EVENT_ID, event_type, "acme", OCCURRED, RECEIVED, body)


from shared.contracts_types import DECODERS, props_json  # noqa: E402

# Every contract in one union: what a consumer of every type would decode a body with.
ALL_TYPES = batch_decoder(sorted(DECODERS))


def one_pass_refuses(doc: Any) -> bool:
    try:
        body = orjson.dumps([doc])
    except orjson.JSONEncodeError:
        return True  # can't travel as JSON at all
    try:
        ALL_TYPES.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return True
    return False


def reason(doc: Any) -> str:
    with pytest.raises(ContractError) as info:
        validate_envelope(doc)
    assert one_pass_refuses(doc), "the batch decoder accepts what validate_envelope refuses"
    return str(info.value)


def test_good_open_is_accepted_with_parsed_fields() -> None:
    doc = envelope(ip="192.0.2.1", ua="Mozilla/5.0", props={"purpose": "prefetch"})
    doc["trace"] = {"traceparent": "00-abc-def-01"}
    env = validate_envelope(doc)
    assert env.id == EVENT_ID
    assert env.type == HIT_OPEN_V1
    assert env.tenant == "acme"
    assert env.occurred_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert env.received_at == datetime(2025, 3, 1, 12, 0, 1, 250000, tzinfo=UTC)
    assert env.data["ip"] == "192.0.2.1"
    assert env.trace == {"traceparent": "00-abc-def-01"}


def test_good_click_is_accepted() -> None:
    env = validate_envelope(envelope(HIT_CLICK_V1, url="http://example.com/x?y=1"))
    assert env.type == HIT_CLICK_V1
    assert env.data["url"] == "http://example.com/x?y=1"


def test_missing_trace_becomes_empty_dict() -> None:
    assert validate_envelope(envelope()).trace == {}


def test_timestamps_with_non_utc_offset_are_accepted() -> None:
    doc = envelope()
    doc["occurred_at"] = "2025-03-01T14:00:00+02:00"
    env = validate_envelope(doc)
    assert env.occurred_at.utcoffset() == timedelta(hours=2)
    assert env.occurred_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_email_registered_and_metric_contracts_are_known() -> None:
    assert validate_envelope(envelope(EMAIL_REGISTERED_V1)).type == EMAIL_REGISTERED_V1
    metric = make_envelope(
        EVENT_ID, METRIC_V1, "acme", OCCURRED, RECEIVED, {"name": "m", "value": 1.5}
    )
    assert validate_envelope(metric).type == METRIC_V1


@pytest.mark.parametrize("data", [{"name": "m", "value": True}, {"name": "m", "value": "1"}])
def test_metric_value_must_be_a_number(data: dict[str, Any]) -> None:
    doc = make_envelope(EVENT_ID, METRIC_V1, "acme", OCCURRED, RECEIVED, data)
    assert reason(doc) == "data.value must be a number"


def test_not_an_object() -> None:
    assert reason(["id"]) == "envelope is not an object"


@pytest.mark.parametrize(
    "event_id",
    [
        None,
        42,
        "not-a-uuid",
        EVENT_ID.replace("-", ""),
        EVENT_ID + "0",
        "{" + EVENT_ID[1:] + "}",
        # 36 characters uuid.UUID reads as a UUID, and Postgres's uuid input refuses.
        "urn:" + EVENT_ID.replace("-", ""),
        "{--" + EVENT_ID.replace("-", "") + "}",
        "uuid" + EVENT_ID.replace("-", ""),
        EVENT_ID.replace("-", "")[:8] + "----" + EVENT_ID.replace("-", "")[8:],
        EVENT_ID + "\n",
        EVENT_ID.replace("a", "\uff41"),  # a fullwidth letter
    ],
)
def test_bad_uuid(event_id: Any) -> None:
    doc = envelope()
    doc["id"] = event_id
    assert reason(doc) == "id must be a UUID string"


def test_uppercase_canonical_uuid_is_accepted() -> None:
    doc = envelope()
    doc["id"] = EVENT_ID.upper()
    assert validate_envelope(doc).id == EVENT_ID.upper()


@pytest.mark.parametrize("event_type", ["hit.open.v9", None, 7, "batch.v1"])
def test_unknown_type(event_type: Any) -> None:
    doc = envelope()
    doc["type"] = event_type
    assert reason(doc).startswith("unknown event type")


def test_unknown_type_reason_is_truncated() -> None:
    doc = envelope()
    doc["type"] = "x" * 500
    assert reason(doc) == f"unknown event type {'x' * 40!r}"


@pytest.mark.parametrize("tenant", [None, "", "Acme", "acme corp", "-acme", "a" * 64, 5])
def test_bad_tenant(tenant: Any) -> None:
    doc = envelope()
    doc["tenant"] = tenant
    assert reason(doc) == "tenant is missing or not a valid tenant id"


@pytest.mark.parametrize("field", ["tenant", "email_id"])
def test_ids_with_trailing_newline_are_rejected(field: str) -> None:
    doc = envelope()
    if field == "tenant":
        doc["tenant"] = "acme\n"
    else:
        doc["data"]["email_id"] = "em-1\n"
    with pytest.raises(ContractError):
        validate_envelope(doc)


def test_data_must_be_an_object() -> None:
    doc = envelope()
    doc["data"] = ["em-1"]
    assert reason(doc) == "data must be an object"


@pytest.mark.parametrize("email_id", [None, "", "has space", "x" * 65, 12])
def test_missing_or_bad_email_id(email_id: Any) -> None:
    doc = envelope()
    if email_id is None:
        del doc["data"]["email_id"]
    else:
        doc["data"]["email_id"] = email_id
    assert reason(doc) == "data.email_id is missing or not a valid email id"


@pytest.mark.parametrize("url", ["ftp://example.com/", "javascript:alert(1)", "example.com", None])
def test_click_with_non_http_url(url: Any) -> None:
    doc = envelope(HIT_CLICK_V1)
    doc["data"]["url"] = url
    assert reason(doc) == "data.url must be an http(s) URL"


def test_click_url_too_long() -> None:
    doc = envelope(HIT_CLICK_V1, url="https://example.com/" + "a" * 2100)
    assert reason(doc) == "data.url longer than 2048"


def test_click_url_with_nul() -> None:
    doc = envelope(HIT_CLICK_V1, url="https://example.com/\x00")
    assert reason(doc) == "data.url contains a NUL character"


def test_nul_in_ua() -> None:
    assert reason(envelope(ua="Mozilla\x00")) == "data.ua contains a NUL character"


def test_ua_too_long_or_not_a_string() -> None:
    expected = f"data.ua must be a string of at most {MAX_UA_LEN} characters"
    assert reason(envelope(ua="u" * (MAX_UA_LEN + 1))) == expected
    assert reason(envelope(ua=["Mozilla"])) == expected


def test_props_with_nul_in_value_or_key() -> None:
    assert reason(envelope(props={"k": "v\x00"})) == "data.props contains a NUL character"
    assert reason(envelope(props={"k\x00": "v"})) == "data.props contains a NUL character"


def test_props_must_be_an_object() -> None:
    assert reason(envelope(props=["a"])) == "data.props must be an object"


def test_props_too_large() -> None:
    assert reason(envelope(props={"k": "v" * MAX_PROPS_BYTES})) == (
        f"data.props larger than {MAX_PROPS_BYTES} bytes"
    )


@pytest.mark.parametrize("ip", ["999.1.1.1", "localhost", "1.2.3"])
def test_ip_not_an_ip(ip: str) -> None:
    assert reason(envelope(ip=ip)) == "data.ip is not an IP address"


def test_ip_not_a_string() -> None:
    assert reason(envelope(ip=3232235777)) == "data.ip must be a string of at most 64 characters"


def test_naive_timestamp() -> None:
    doc = envelope()
    doc["occurred_at"] = "2025-03-01T12:00:00"
    assert reason(doc) == "occurred_at must carry a UTC offset"


def test_unparseable_timestamp() -> None:
    doc = envelope()
    doc["received_at"] = "yesterday"
    assert reason(doc) == "received_at is not an RFC 3339 timestamp: 'yesterday'"


@pytest.mark.parametrize("value", [None, 1700000000])
def test_timestamp_must_be_a_string(value: Any) -> None:
    doc = envelope()
    doc["occurred_at"] = value
    assert reason(doc) == "occurred_at must be an RFC 3339 string"


@pytest.mark.parametrize("field", ["occurred_at", "received_at"])
@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-00:31"],
)
def test_timestamp_out_of_range_in_utc(field: str, value: str) -> None:
    # A valid ISO time whose UTC instant is past year 9999 or before year 1: asyncpg can't
    # convert it to store a timestamptz, and the INSERT of its whole batch would fail.
    doc = envelope()
    doc[field] = value
    assert reason(doc) == f"{field} is out of range in UTC: {value!r}"


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T22:59:59+01:00",
        "0001-01-01T00:00:00+00:00",
        "0001-01-01T01:00:00+01:00",
        "0001-01-01T00:00:00-01:00",
    ],
)
def test_timestamp_at_the_edges_of_the_range_is_accepted(value: str) -> None:
    doc = envelope()
    doc["occurred_at"] = value
    assert validate_envelope(doc).occurred_at == datetime.fromisoformat(value)


def test_props_nested_too_deep_to_encode() -> None:
    props: dict[str, Any] = {}
    inner = props
    for _ in range(300):
        inner["a"] = {}
        inner = inner["a"]
    assert reason(envelope(props=props)).startswith("data.props can't be stored:")


@pytest.mark.parametrize("url", ["HTTPS://example.com/a", "Http://example.com/", "hTTp://x.y"])
def test_click_url_scheme_in_any_case_is_accepted(url: str) -> None:
    # What ingest redirected for links signed before schemes were lowercased.
    assert validate_envelope(envelope(HIT_CLICK_V1, url=url)).data["url"] == url


def test_click_url_with_leading_space_is_refused() -> None:
    doc = envelope(HIT_CLICK_V1)
    doc["data"]["url"] = " https://example.com/"
    assert reason(doc) == "data.url must be an http(s) URL"


def test_envelope_dict_is_the_envelope_validated() -> None:
    doc = envelope(HIT_CLICK_V1, ip="192.0.2.1")
    doc["trace"] = {"traceparent": "00-abc-def-01"}
    assert envelope_dict(validate_envelope(doc)) == doc


def test_trace_must_be_an_object() -> None:
    doc = envelope()
    doc["trace"] = "00-abc"
    assert reason(doc) == "trace must be an object"


# --- batches ---------------------------------------------------------------------------


def test_encode_then_decode_batch_roundtrips() -> None:
    items = [envelope(), envelope(HIT_CLICK_V1)]
    assert decode_batch(encode_batch(items)) == items


def test_decode_batch_returns_items_undecoded() -> None:
    assert decode_batch(b'[1, "x", {"id": null}]') == [1, "x", {"id": None}]


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[1,"])
def test_decode_batch_rejects_non_json(body: bytes) -> None:
    with pytest.raises(ContractError, match=r"^body is not JSON: "):
        decode_batch(body)


@pytest.mark.parametrize("body", [b"{}", b'"x"', b"42", b"null"])
def test_decode_batch_rejects_non_array(body: bytes) -> None:
    with pytest.raises(ContractError, match=r"^body is not a JSON array of envelopes$"):
        decode_batch(body)


def test_encode_batch_is_json_array() -> None:
    assert orjson.loads(encode_batch([{"a": 1}])) == [{"a": 1}]


@pytest.mark.parametrize("event_type", [HIT_OPEN_V2, HIT_CLICK_V2])
def test_v2_hits_carry_hints(event_type: str) -> None:
    doc = envelope(HIT_OPEN_V1 if event_type == HIT_OPEN_V2 else HIT_CLICK_V1)
    doc["type"] = event_type
    doc["data"]["hints"] = {"purpose": "prefetch", "dnt": True, "gpc": False}
    assert validate_envelope(doc).data["hints"]["dnt"] is True


@pytest.mark.parametrize(
    ("hints", "why"),
    [
        ("prefetch", "data.hints must be an object"),
        ({"purpose": 1}, "data.hints.purpose must be a string of at most 64"),
        ({"purpose": "p" * 65}, "data.hints.purpose must be a string of at most 64"),
        ({"dnt": "1"}, "data.hints.dnt must be true or false"),
        ({"tracking": True}, "data.hints has unknown fields: tracking"),
    ],
)
def test_bad_hints(hints: Any, why: str) -> None:
    doc = envelope()
    doc["type"] = HIT_OPEN_V2
    doc["data"]["hints"] = hints
    assert reason(doc) == why


def notification(event_type: str, status: str, alert_status: str | None = None) -> dict[str, Any]:
    alert = {
        "fingerprint": "fp-1",
        "status": alert_status or status,
        "labels": {"service": "api"},
        "annotations": {},
        "starts_at": OCCURRED,
        "ends_at": None,
        "generator_url": "http://belfry.test/api/v1/alerts/fp-1",
        "value": 2.5,
        "severity": "critical",
    }
    data = {
        "notification_id": EVENT_ID,
        "channel": "pd",
        "channel_type": "pagerduty",
        "rule_id": "r-1",
        "rule_name": "High",
        "status": status,
        "group_key": "r-1:{}",
        "group_labels": {"alertname": "High"},
        "alerts": [alert],
    }
    return make_envelope(EVENT_ID, event_type, "acme", OCCURRED, RECEIVED, data)


@pytest.mark.parametrize("status", ["firing", "resolved"])
def test_notification_v1_and_v2_take_firing_and_resolved(status: str) -> None:
    for event_type in (ALERT_NOTIFICATION_V1, ALERT_NOTIFICATION_V2):
        env = validate_envelope(notification(event_type, status))
        assert env.type == event_type and env.data["status"] == status


def test_acknowledged_is_a_v2_status_only() -> None:
    """A contract change is a new version: v1 keeps refusing what it never carried."""
    env = validate_envelope(notification(ALERT_NOTIFICATION_V2, "acknowledged"))
    assert env.data["alerts"][0]["status"] == "acknowledged"
    assert reason(notification(ALERT_NOTIFICATION_V1, "acknowledged")) == (
        "data.status must be 'firing' or 'resolved'"
    )
    assert reason(notification(ALERT_NOTIFICATION_V1, "firing", "acknowledged")) == (
        "data.alerts[0].status must be 'firing' or 'resolved'"
    )
    assert reason(notification(ALERT_NOTIFICATION_V2, "snoozed")) == (
        "data.status must be 'firing' or 'resolved' or 'acknowledged'"
    )
    assert reason(notification(ALERT_NOTIFICATION_V2, "acknowledged", "paused")) == (
        "data.alerts[0].status must be 'firing' or 'resolved' or 'acknowledged'"
    )


# --- the typed contracts ----------------------------------------------------------------


def test_one_decoder_per_contract_version() -> None:
    assert set(DECODERS) == {
        HIT_OPEN_V1,
        HIT_CLICK_V1,
        HIT_OPEN_V2,
        HIT_CLICK_V2,
        EMAIL_REGISTERED_V1,
        METRIC_V1,
        "metric.v2",
        "error.v1",
        ALERT_NOTIFICATION_V1,
        ALERT_NOTIFICATION_V2,
    }


def test_a_batch_decodes_in_one_pass_into_typed_events() -> None:
    click = envelope(HIT_CLICK_V1, ip="192.0.2.1", props={"campaign": "x"})
    click["type"] = HIT_CLICK_V2
    click["data"]["hints"] = {"purpose": "prefetch", "dnt": True}
    opened = envelope(ua="Mozilla/5.0")
    events = ALL_TYPES.decode(encode_batch([click, opened]))
    assert [e.type for e in events] == [HIT_CLICK_V2, HIT_OPEN_V1]
    assert all(isinstance(e, Event) for e in events)
    data = events[0].data
    assert (data.email_id, data.ip, data.url) == ("em-1", "192.0.2.1", "https://example.com/a")
    assert data.hints.purpose == "prefetch" and data.hints.dnt is True and not data.hints.gpc
    assert orjson.loads(props_json(data.props) or "null") == {"campaign": "x"}
    assert events[1].data.ua == "Mozilla/5.0" and events[1].data.hints is None
    assert props_json(events[1].data.props) is None
    assert events[1].occurred_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_a_v1_hit_has_no_hints_even_if_a_producer_sends_some() -> None:
    """A field is part of the version that defines it: v1's data has no hints."""
    doc = envelope()
    doc["data"]["hints"] = {"dnt": True}
    assert decode_event(doc).data.hints is None


def test_null_props_and_trace_read_as_absent() -> None:
    doc = envelope(props=None)
    doc["trace"] = None
    event = decode_event(doc)
    assert props_json(event.data.props) is None and event.trace == {}


def test_validate_envelope_keeps_data_as_it_came() -> None:
    doc = envelope(ip="192.0.2.1", extra={"kept": True})
    assert validate_envelope(doc).data is doc["data"]


@pytest.mark.parametrize(
    "doc",
    [
        envelope(ip="2001:db8::1", ua="UA", props={"a": [1, {"b": None}]}),
        envelope(HIT_CLICK_V1, url="HTTPS://example.com/"),
        envelope(EMAIL_REGISTERED_V1),
        make_envelope(EVENT_ID, METRIC_V1, "acme", OCCURRED, RECEIVED, {"name": "m", "value": 2}),
        notification(ALERT_NOTIFICATION_V2, "acknowledged"),
        notification(ALERT_NOTIFICATION_V1, "resolved"),
    ],
)
def test_good_envelopes_pass_both_ways(doc: dict[str, Any]) -> None:
    assert validate_envelope(doc).type == doc["type"]
    assert not one_pass_refuses(doc)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "email_id": st.sampled_from(["em-1", "", "a b", "x" * 65]) | _json,
        "ip": st.sampled_from(["192.0.2.1", "2001:db8::1", "1.2.3", "fe80::1%eth0"]) | _json,
        "ua": st.text(max_size=6) | _json,
        "url": st.sampled_from(["https://x/", "ftp://x", "HTTP://x"]) | _json,
        "props": _json,
        "hints": st.fixed_dictionaries(
            {}, optional={"purpose": _json, "dnt": _json, "gpc": _json, "x": _json}
        )
        | _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    event_type=st.sampled_from([HIT_OPEN_V1, HIT_CLICK_V1, HIT_OPEN_V2, HIT_CLICK_V2]),
    data=_fields,
    trace=st.none() | _json,
)
def test_one_pass_and_item_by_item_agree(event_type: str, data: Any, trace: Any) -> None:
    """The writer decodes a body in one pass, and item by item only when that fails: the
    two must accept exactly the same envelopes."""
    doc = make_envelope(EVENT_ID, event_type, "acme", OCCURRED, RECEIVED, data)
    doc["trace"] = trace
    try:
        decode_event(doc)
    except ContractError:
        assert one_pass_refuses(doc)
    else:
        assert not one_pass_refuses(doc)
