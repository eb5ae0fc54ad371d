"""Poison events can't wedge the writer: an event Postgres can't store is dead-lettered
with its reason and every other event of its batch is stored.

Two layers: validation refuses what Postgres can't take (ids Python reads as UUIDs but
Postgres doesn't, timestamps that leave the range once in UTC), and, past validation, a
batch whose INSERT fails on its data is split until the refused event is alone."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from services.writer import dlq
from services.writer.keys import CONSUMER
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
