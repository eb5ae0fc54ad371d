"""Poison events can't wedge the writer: an event Postgres can't store is dead-lettered
with its reason and every other event of its batch is stored.

Two layers: validation refuses what Postgres can't take (ids Python reads as UUIDs but
Postgres doesn't, timestamps that leave the range once in UTC), and, past validation, a
batch whose INSERT fails on its data is split until the refused event is alone."""

from __future__ import annotations

import random
import uuid
from typing import Any

import asyncpg
import orjson

from services.writer import dlq
from services.writer.keys import CONSUMER
from services.writer.store import PostgresEventStore
from shared.contracts import (
    HIT_CLICK_V2,
    HIT_OPEN_V2,
    ContractError,
    make_envelope,
    validate_envelope,
)
from shared.db import Database
from tests.conftest import AMQP_URL, Started
from tests.integration.helpers import ready, rows
from tests.integration.test_writer import dlq_depth, hit, publish
from tests.support.eventually import eventually

# Spellings Python's uuid.UUID and fromisoformat accept and Postgres can't store.
URN_ID = "urn:" + "0123456789abcdef" * 2
BRACES_ID = "{--" + "0123456789abcdef" * 2 + "}"
TOO_LATE = "9999-12-31T23:59:59-01:00"  # year 10000 in UTC
TOO_EARLY = "0001-01-01T00:00:00+01:00"  # year 0 in UTC


def poison() -> list[dict[str, Any]]:
    urn, braces, late, early = hit("p-urn"), hit("p-braces"), hit("p-late"), hit("p-early")
    urn["id"] = URN_ID
    braces["id"] = BRACES_ID
    late["occurred_at"] = TOO_LATE
    early["received_at"] = TOO_EARLY
    return [urn, braces, late, early]


async def test_events_postgres_cant_store_are_dead_lettered_and_the_rest_stored(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    writer = await start_writer()
    await ready(writer)
    channel = await amqp.channel()
    bad = poison()
    await publish(channel, prefix, orjson.dumps([hit("ok1"), *bad[:2], hit("ok2"), *bad[2:]]))
    await publish(channel, prefix, orjson.dumps([hit("ok3")]))

    stored = await rows(db, 3)
    assert sorted(r["email_id"] for r in stored) == ["ok1", "ok2", "ok3"]
    await eventually(lambda: dlq_depth(prefix), lambda n: n == 4, what="4 dead letters")
    listed = await dlq.list_dead_letters(AMQP_URL, prefix)
    by_email = {orjson.loads(d["body"])[0]["data"]["email_id"]: d for d in listed}
    assert {e: d["stage"] for e, d in by_email.items()} == dict.fromkeys(
        ["p-urn", "p-braces", "p-late", "p-early"], "validate"
    )
    assert by_email["p-urn"]["reason"] == "id must be a UUID string"
    assert by_email["p-braces"]["reason"] == "id must be a UUID string"
    assert by_email["p-late"]["reason"].startswith("occurred_at is out of range")
    assert by_email["p-early"]["reason"].startswith("received_at is out of range")
    assert (await writer.get("/readyz")).status == 200


async def test_an_event_postgres_refuses_past_validation_is_split_out_of_its_batch(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    # A rule only the database knows: validation accepts the event, the INSERT fails.
    await db.execute(
        "ALTER TABLE events ADD CONSTRAINT test_poison CHECK (user_agent <> 'poison-ua')"
    )
    writer = await start_writer()
    await ready(writer)
    channel = await amqp.channel()
    good = [hit(f"ok{i}", ua="Mozilla/5.0") for i in range(7)]
    bad = hit("bad", ua="poison-ua")
    await publish(channel, prefix, orjson.dumps([*good[:5], bad, *good[5:]]))

    stored = await rows(db, 7)
    assert sorted(r["email_id"] for r in stored) == [f"ok{i}" for i in range(7)]
    await eventually(lambda: dlq_depth(prefix), lambda n: n == 1, what="1 dead letter")
    [listed] = await dlq.list_dead_letters(AMQP_URL, prefix)
    assert listed["stage"] == "store"
    assert listed["reason"].startswith("CheckViolationError: ")
    assert "test_poison" in listed["reason"]
    [dead] = orjson.loads(listed["body"])
    assert dead["id"] == bad["id"] and dead["data"] == bad["data"]
    consumer = writer.app[CONSUMER] if writer.app else None
    assert consumer is not None and consumer.db_error is None
    assert (await writer.get("/readyz")).status == 200


# --- what validation accepts, Postgres stores ------------------------------------------

_IDS = [
    "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b",
    "0190A5B2-7C3D-7E4F-8A9B-0C1D2E3F4A5B",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    URN_ID,
    BRACES_ID,
    "0190a5b27c3d7e4f8a9b0c1d2e3f4a5b",
    "{0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b}",
]
_TIMES = [
    "9999-12-31T23:59:59.999999+00:00",
    "9999-12-31T23:59:59+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00-14:00",
    "0001-01-01T00:00:00+14:00",
    "2026-02-28T23:30:00-01:00",
    "2026-03-01T00:30:00+01:00",
    "2026-06-15T12:00:00.5Z",
    "20260615T120000+0530",
]
_IPS = [
    "192.0.2.1",
    "0.0.0.0",
    "255.255.255.255",
    "01.2.3.4",
    "2001:db8::1",
    "::ffff:192.0.2.1",
    "fe80::1%eth0",
    "fe80::1%25",
    "::",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "1.2.3.4\n",
    "١٢٣.1.1.1",
]
_CHARS = "a\u00e9\u4e2d\U0001f600\u200b\ufeff\\\"'\t\x01\x7f\u2028%_"


def _text(rng: random.Random, most: int) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, most)))


def _json(rng: random.Random, depth: int) -> Any:
    pick = rng.randint(0, 6 if depth < 60 else 3)
    if pick == 0:
        return _text(rng, 8)
    if pick == 1:
        return rng.choice([0, -1, 2**64 - 1, -(2**63), 1.5e308, -0.0, 1e-320, True, None])
    if pick in (2, 3):
        return rng.choice(["", "x", "\u0000"]) if depth % 7 else _text(rng, 3)
    if pick == 4:
        return [_json(rng, depth + 1) for _ in range(rng.randint(0, 2))]
    return {_text(rng, 4): _json(rng, depth + 1) for _ in range(rng.randint(0, 2))}


def _event(rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {"email_id": rng.choice(["e-1", "E_2", "x" * 64])}
    if rng.random() < 0.8:
        data["ip"] = rng.choice(_IPS)
    if rng.random() < 0.8:
        data["ua"] = _text(rng, 40) if rng.random() < 0.9 else "u" * 1024
    if rng.random() < 0.6:
        data["props"] = {"p": _json(rng, 0)}
    kind = rng.choice([HIT_OPEN_V2, HIT_CLICK_V2])
    if kind == HIT_CLICK_V2:
        data["url"] = rng.choice(["https://", "HTTPS://", "http://"]) + "x.y/" + _text(rng, 30)
    if rng.random() < 0.3:
        data["hints"] = {"dnt": rng.random() < 0.5, "purpose": _text(rng, 10)}
    event_id = rng.choice(_IDS) if rng.random() < 0.3 else str(uuid.UUID(int=rng.getrandbits(128)))
    return make_envelope(event_id, kind, "acme", rng.choice(_TIMES), rng.choice(_TIMES), data)


async def test_every_event_validation_accepts_postgres_stores(database_url: str) -> None:
    # Odd but possible values for each field, drawn with a fixed seed; whatever
    # validation accepts must go into Postgres in one batch, without an error.
    rng = random.Random(13)
    accepted, seen = [], set()
    for _ in range(3000):
        try:
            event = validate_envelope(orjson.loads(orjson.dumps(_event(rng))))  # as received
        except ContractError:
            continue
        if (event.id.lower(), event.occurred_at) not in seen:  # one row per primary key
            seen.add((event.id.lower(), event.occurred_at))
            accepted.append(event)
    assert len(accepted) > 50
    db = Database(database_url)
    try:
        assert await PostgresEventStore(db).insert_hits(accepted) == len(accepted)
    finally:
        await db.close()


async def test_an_event_with_an_offset_lands_in_the_partition_of_its_utc_month(
    database_url: str, db: asyncpg.Connection
) -> None:
    # 23:30 on 28 February at -01:00 is March in UTC: had it marked February's partition
    # as ensured, February's events would have stayed in the default partition for good.
    late = hit("late")
    late["occurred_at"] = "2026-02-28T23:30:00-01:00"
    february = hit("feb")
    february["occurred_at"] = "2026-02-10T12:00:00+00:00"
    store = PostgresEventStore(Database(database_url))
    try:
        for doc in (late, february):
            assert await store.insert_hits([validate_envelope(doc)]) == 1
    finally:
        await store.db.close()
    placed = await db.fetch("SELECT email_id, tableoid::regclass::text AS part FROM events")
    assert {r["email_id"]: r["part"] for r in placed} == {
        "late": "events_2026_03",
        "feb": "events_2026_02",
    }
