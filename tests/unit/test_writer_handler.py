"""The writer's broker-free logic: splitting a message into storable events and rejected
items, and storing events with duplicates counted (against a fake EventStore)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.writer.handler import DecodedMessage, StoreResult, decode_message, store_events
from shared.contracts import (
    EMAIL_REGISTERED_V1,
    HIT_CLICK_V1,
    HIT_OPEN_V1,
    Event,
    make_envelope,
)
from shared.ids import new_event_id


def hit(email_id: str, kind: str = HIT_OPEN_V1, **data: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    if kind == HIT_CLICK_V1:
        data.setdefault("url", "https://example.com/")
    return make_envelope(new_event_id(), kind, "acme", now, now, {"email_id": email_id, **data})


class FakeStore:
    """Pretends ids in `seen` are already stored."""

    def __init__(self, seen: set[str] | None = None) -> None:
        self.seen = seen or set()
        self.calls: list[list[Event]] = []

    async def insert_hits(self, events: list[Event]) -> int:
        self.calls.append(list(events))
        new = [e for e in events if e.id not in self.seen]
        self.seen.update(e.id for e in new)
        return len(new)


def test_good_items_become_events_in_order() -> None:
    items = [hit("a"), hit("b", HIT_CLICK_V1), hit("c", ip="192.0.2.3")]
    decoded = decode_message(orjson.dumps(items))
    assert decoded.body_error is None
    assert decoded.rejected == []
    assert [e.id for e in decoded.events] == [i["id"] for i in items]
    assert [e.type for e in decoded.events] == [HIT_OPEN_V1, HIT_CLICK_V1, HIT_OPEN_V1]
    assert decoded.events[1].data.url == "https://example.com/"


def test_empty_array_is_an_empty_message() -> None:
    assert decode_message(b"[]") == DecodedMessage()


def test_non_json_body_sets_body_error() -> None:
    decoded = decode_message(b"{not json")
    assert decoded.body_error is not None
    assert decoded.body_error.startswith("body is not JSON")
    assert decoded.events == []
    assert decoded.rejected == []


def test_non_array_body_sets_body_error() -> None:
    decoded = decode_message(orjson.dumps(hit("a")))
    assert decoded.body_error == "body is not a JSON array of envelopes"
    assert decoded.events == []


def test_mixed_items_split_into_events_and_rejected_with_reasons() -> None:
    bad_tenant = hit("x")
    bad_tenant["tenant"] = "Not A Tenant!"
    bad_url = hit("y", HIT_CLICK_V1, url="javascript:alert(1)")
    good1, good2 = hit("ok1"), hit("ok2")
    decoded = decode_message(orjson.dumps([good1, bad_tenant, 42, good2, bad_url]))

    assert decoded.body_error is None
    assert [e.id for e in decoded.events] == [good1["id"], good2["id"]]
    assert [(r.item, r.reason) for r in decoded.rejected] == [
        (bad_tenant, "tenant is missing or not a valid tenant id"),
        (42, "envelope is not an object"),
        (bad_url, "data.url must be an http(s) URL"),
    ]


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\\ud800", b"\\q"])
def test_props_that_are_not_json_make_the_body_unusable(bad: bytes) -> None:
    """The one-pass decode skips over `props` unread: its bytes are still checked, and a
    body orjson can't read is refused whole, as before (never stored, never a wedge)."""
    body = orjson.dumps([hit("a", props={"k": "PLACEHOLDER"})]).replace(b"PLACEHOLDER", bad)
    decoded = decode_message(body)
    assert decoded.events == []
    assert decoded.body_error is not None and decoded.body_error.startswith("body is not JSON")


def test_event_type_the_writer_does_not_store_is_rejected() -> None:
    registered = hit("e1", EMAIL_REGISTERED_V1)
    decoded = decode_message(orjson.dumps([registered]))
    assert decoded.events == []
    assert [(r.item, r.reason) for r in decoded.rejected] == [
        (registered, "writer does not store email.registered.v1 events")
    ]


async def test_store_events_counts_all_new() -> None:
    events = decode_message(orjson.dumps([hit("a"), hit("b")])).events
    store = FakeStore()
    assert await store_events(events, store) == StoreResult(inserted=2, duplicates=0)
    assert store.calls == [events]


async def test_store_events_counts_already_stored_as_duplicates() -> None:
    events = decode_message(orjson.dumps([hit("a"), hit("b"), hit("c")])).events
    store = FakeStore(seen={events[0].id, events[2].id})
    assert await store_events(events, store) == StoreResult(inserted=1, duplicates=2)


async def test_store_events_same_batch_twice_is_all_duplicates() -> None:
    events = decode_message(orjson.dumps([hit("a"), hit("b")])).events
    store = FakeStore()
    await store_events(events, store)
    assert await store_events(events, store) == StoreResult(inserted=0, duplicates=2)


async def test_store_events_with_nothing_skips_the_store() -> None:
    store = FakeStore()
    assert await store_events([], store) == StoreResult(0, 0)
    assert store.calls == []
