"""The writer stores `error.v1` events beside hits: exactly once (a redelivered or resent
event is one row), in the same batch as hits, and a bad or refused error event is
dead-lettered alone with its reason while the rest of its batch is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from services.writer import dlq
from shared.contracts import make_envelope
from shared.errors_contract import ERROR_V1
from shared.ids import new_event_id
from tests.conftest import AMQP_URL, Started
from tests.integration.helpers import ready, rows
from tests.integration.test_writer import dlq_depth, hit, publish
from tests.support.eventually import eventually


def error_event(message: str, fingerprint: str = "fp-1", **data: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    body = {"fingerprint": fingerprint, "type": "E", "message": message, **data}
    return make_envelope(new_event_id(), ERROR_V1, "acme", now, now, body)


async def errors(db: asyncpg.Connection, n: int) -> list[Any]:
    async def fetch() -> list[Any]:
        return list(await db.fetch("SELECT * FROM errors ORDER BY message"))

    return await eventually(fetch, lambda r: len(r) >= n, what=f"{n} error rows")


async def test_redelivered_and_resent_errors_are_stored_once(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    writer = await start_writer()
    await ready(writer)
    channel = await amqp.channel()
    first, second = error_event("a"), error_event("b", labels={"service": "web"})
    body = orjson.dumps([first, hit("h1"), second])
    await publish(channel, prefix, body)
    await publish(channel, prefix, body)  # the same message again (a redelivery)
    await publish(channel, prefix, orjson.dumps([second, error_event("c")]))  # a resend

    # Messages are stored in order: once the last one's hit is in, all three were consumed.
    await publish(channel, prefix, orjson.dumps([hit("last")]))
    await rows(db, 2)
    stored = await errors(db, 3)
    assert [r["message"] for r in stored] == ["a", "b", "c"]
    assert stored[1]["labels"] == '{"service": "web"}'
    assert stored[1]["fingerprint"] == "fp-1" and stored[1]["tenant_id"] == "acme"
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    assert await dlq_depth(prefix) == 0  # duplicates are skipped, not refused


async def test_bad_error_events_are_dead_lettered_alone(
    start_writer: Started, db: asyncpg.Connection, amqp: Any, prefix: str
) -> None:
    # A rule only the database knows: validation accepts the event, the INSERT fails.
    await db.execute("ALTER TABLE errors ADD CONSTRAINT test_poison CHECK (message <> 'poison')")
    writer = await start_writer()
    await ready(writer)
    channel = await amqp.channel()
    invalid = error_event("bad fingerprint", fingerprint="has space")
    refused = error_event("poison")
    good = [error_event(f"ok{i}") for i in range(3)]
    await publish(channel, prefix, orjson.dumps([good[0], invalid, good[1], refused, good[2]]))

    stored = await errors(db, 3)
    assert [r["message"] for r in stored] == ["ok0", "ok1", "ok2"]
    await eventually(lambda: dlq_depth(prefix), lambda n: n == 2, what="2 dead letters")
    listed = {d["stage"]: d for d in await dlq.list_dead_letters(AMQP_URL, prefix)}
    assert "fingerprint" in listed["validate"]["reason"]
    assert orjson.loads(listed["validate"]["body"])[0]["id"] == invalid["id"]
    assert "test_poison" in listed["store"]["reason"]
    assert orjson.loads(listed["store"]["body"])[0]["id"] == refused["id"]
