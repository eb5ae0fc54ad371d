"""HitConsumer's flush without a broker or database: backoff while the store fails
(injected sleep, no real waiting), readiness error, dead letters before acks, and the
flusher task's size trigger and SIGTERM drain."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry

from services.writer.consumer import HitConsumer
from services.writer.metrics import WriterMetrics
from services.writer.settings import WriterSettings
from shared.contracts import HIT_OPEN_V1, Event, make_envelope
from shared.ids import new_event_id
from shared.settings import CommonSettings


def hit(email_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return make_envelope(new_event_id(), HIT_OPEN_V1, "acme", now, now, {"email_id": email_id})


class Log(list[str]):
    """Shared record of what happened, in order, across fakes."""


class FakeMessage:
    def __init__(self, body: bytes, log: Log, message_id: str = "msg-1") -> None:
        self.body = body
        self.message_id = message_id
        self.log = log
        self.acked = asyncio.Event()

    async def ack(self) -> None:
        self.log.append(f"ack {self.message_id}")
        self.acked.set()


class FakeDeadLetters:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.published: list[tuple[aio_pika.Message, str]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str) -> None:
        self.log.append(f"dead-letter {message.headers['x-belfry-stage']}")
        self.published.append((message, routing_key))


class FlakyStore:
    """Fails the first `failures` inserts, then stores and reports `duplicates` as seen."""

    def __init__(self, failures: int = 0, duplicates: int = 0) -> None:
        self.failures = failures
        self.duplicates = duplicates
        self.calls: list[list[Event]] = []

    async def insert_hits(self, events: list[Event]) -> int:
        self.calls.append(list(events))
        if len(self.calls) <= self.failures:
            raise ConnectionError("connection refused")
        return len(events) - self.duplicates


class MidpointRng(random.Random):
    """No jitter: uniform(a, b) is always the midpoint (1.0 for the 0.5..1.5 factor)."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


class Harness:
    def __init__(self, store: FlakyStore, rng: random.Random | None = None, **settings: Any):
        self.log = Log()
        self.delays: list[float] = []
        self.errors_while_sleeping: list[str | None] = []
        self.acks_while_sleeping: list[int] = []
        self.store = store
        self.settings = WriterSettings(common=CommonSettings(service="writer"), **settings)
        self.registry = CollectorRegistry()  # this consumer's counts alone
        self.consumer = HitConsumer(
            self.settings,
            store,
            sleep=self.sleep,
            rng=rng or MidpointRng(),
            metrics=WriterMetrics(self.registry),
        )
        self.dead_letters = FakeDeadLetters(self.log)
        self.consumer.dead_letters = self.dead_letters  # type: ignore[assignment]

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.errors_while_sleeping.append(self.consumer.db_error)
        self.acks_while_sleeping.append(sum(e.startswith("ack") for e in self.log))

    async def deliver(self, body: bytes, message_id: str = "msg-1") -> FakeMessage:
        message = FakeMessage(body, self.log, message_id)
        await self.consumer.on_message(message)  # type: ignore[arg-type]
        return message

    def counter(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})


async def test_flush_backs_off_with_growing_delays_then_stores_and_acks() -> None:
    h = Harness(FlakyStore(failures=2))
    message = await h.deliver(orjson.dumps([hit("a"), hit("b")]))

    await h.consumer.flush()

    assert h.delays == pytest.approx([0.2, 0.4])
    assert len(h.store.calls) == 3
    assert h.store.calls[0] == h.store.calls[2]  # the same batch is retried
    assert h.errors_while_sleeping == ["ConnectionError: connection refused"] * 2
    assert h.acks_while_sleeping == [0, 0]  # nothing acked while the database is away
    assert h.consumer.db_error is None
    assert message.acked.is_set()
    assert h.consumer.stored_batches == 1


async def test_backoff_is_capped_at_backoff_max() -> None:
    h = Harness(FlakyStore(failures=5), backoff_min=0.2, backoff_max=0.5)
    await h.deliver(orjson.dumps([hit("a")]))
    await h.consumer.flush()
    assert h.delays == pytest.approx([0.2, 0.4, 0.5, 0.5, 0.5])


async def test_backoff_jitter_stays_within_half_to_one_and_a_half() -> None:
    h = Harness(FlakyStore(failures=4), rng=random.Random(7), backoff_min=1.0, backoff_max=100)
    await h.deliver(orjson.dumps([hit("a")]))
    await h.consumer.flush()
    bases = [1.0, 2.0, 4.0, 8.0]
    assert len(h.delays) == 4
    for delay, base in zip(h.delays, bases, strict=True):
        assert 0.5 * base <= delay <= 1.5 * base


async def test_db_failures_are_counted() -> None:
    h = Harness(FlakyStore(failures=3))
    await h.deliver(orjson.dumps([hit("a")]))
    await h.consumer.flush()
    assert h.counter("belfry_writer_db_failures_total") == 3
    assert h.counter("belfry_writer_insert_seconds_count") == 1  # the one that succeeded


async def test_duplicates_and_inserted_rows_are_counted() -> None:
    h = Harness(FlakyStore(duplicates=2))
    await h.deliver(orjson.dumps([hit("a"), hit("b"), hit("c")]))
    await h.consumer.flush()
    assert h.counter("belfry_writer_rows_inserted_total") == 1
    assert h.counter("belfry_writer_duplicates_total") == 2
    assert h.counter("belfry_writer_batch_rows_sum") == 3


async def test_failure_while_stopping_gives_up_without_acking() -> None:
    h = Harness(FlakyStore(failures=1))
    message = await h.deliver(orjson.dumps([hit("a")]))
    await h.consumer.stop()  # never started: only marks the consumer as stopping
    await h.consumer.flush()
    assert h.delays == []
    assert not message.acked.is_set()
    assert h.consumer.db_error == "ConnectionError: connection refused"


async def test_rejected_item_is_dead_lettered_with_reason_before_ack() -> None:
    h = Harness(FlakyStore())
    bad = hit("x")
    bad["tenant"] = "Not A Tenant!"
    good = hit("ok")
    message = await h.deliver(orjson.dumps([good, bad]), message_id="m-42")

    await h.consumer.flush()

    assert h.log == ["dead-letter validate", "ack m-42"]
    assert [e.id for e in h.store.calls[0]] == [good["id"]]
    [(dead, routing_key)] = h.dead_letters.published
    assert routing_key == "writer.hits"
    assert orjson.loads(dead.body) == [bad]
    assert dead.headers is not None
    assert dead.headers["x-belfry-reason"] == "tenant is missing or not a valid tenant id"
    assert dead.headers["x-belfry-stage"] == "validate"
    assert dead.headers["x-belfry-source-queue"] == "belfry.writer.hits"
    assert dead.headers["x-belfry-original-message-id"] == "m-42"
    assert datetime.fromisoformat(str(dead.headers["x-belfry-failed-at"])).tzinfo is not None
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.acked.is_set()


async def test_each_rejected_item_is_its_own_dead_letter() -> None:
    h = Harness(FlakyStore())
    await h.deliver(orjson.dumps([42, hit("ok"), "x"]))
    await h.consumer.flush()
    assert [orjson.loads(m.body) for m, _ in h.dead_letters.published] == [[42], ["x"]]
    assert h.log == ["dead-letter validate", "dead-letter validate", "ack msg-1"]


async def test_unparseable_body_is_dead_lettered_whole_at_decode_stage() -> None:
    h = Harness(FlakyStore())
    await h.deliver(b"{not json", message_id="m-bad")
    await h.consumer.flush()
    [(dead, _)] = h.dead_letters.published
    assert dead.body == b"{not json"
    assert dead.headers is not None
    assert dead.headers["x-belfry-stage"] == "decode"
    assert str(dead.headers["x-belfry-reason"]).startswith("body is not JSON")
    assert h.log == ["dead-letter decode", "ack m-bad"]


async def test_dead_letter_reason_is_truncated_to_500_characters() -> None:
    h = Harness(FlakyStore())
    await h.deliver(b"x" * 2000)
    await h.consumer.flush()
    [(dead, _)] = h.dead_letters.published
    assert dead.headers is not None
    assert len(str(dead.headers["x-belfry-reason"])) <= 500


async def test_without_dead_letter_exchange_message_is_not_acked() -> None:
    h = Harness(FlakyStore())
    h.consumer.dead_letters = None
    message = await h.deliver(orjson.dumps([hit("ok"), 42]))
    await h.consumer.flush()
    assert len(h.store.calls) == 1  # the good event is stored (idempotently)
    assert not message.acked.is_set()  # the broker redelivers; nothing lost


async def test_flusher_stores_as_soon_as_batch_rows_wait() -> None:
    h = Harness(FlakyStore(), batch_rows=3, batch_delay=3600)
    h.consumer.start()
    try:
        first = await h.deliver(orjson.dumps([hit("a"), hit("b")]), "m1")
        second = await h.deliver(orjson.dumps([hit("c")]), "m2")
        await second.acked.wait()
        assert first.acked.is_set()
        assert [len(c) for c in h.store.calls] == [3]
    finally:
        await h.consumer.stop()


async def test_flusher_stores_as_soon_as_the_prefetch_window_is_full() -> None:
    # The broker hands no more than `prefetch` unacked messages: waiting for more rows
    # would wait for the delay alone.
    h = Harness(FlakyStore(), prefetch=2, batch_delay=3600)
    h.consumer.start()
    try:
        first = await h.deliver(orjson.dumps([hit("a")]), "m1")
        second = await h.deliver(orjson.dumps([hit("b")]), "m2")
        await second.acked.wait()
        assert first.acked.is_set()
        assert [len(c) for c in h.store.calls] == [2]
    finally:
        await h.consumer.stop()


async def test_flusher_stores_a_lone_message_once_the_default_batch_delay_passed() -> None:
    # Far from batch_rows and the prefetch window: the delay, counted from the batch's
    # first message, is what stores it (and no later than it plus the insert).
    h = Harness(FlakyStore())
    assert (h.settings.batch_delay, h.settings.prefetch) == (0.15, 100)
    loop = asyncio.get_running_loop()
    h.consumer.start()
    try:
        started = loop.time()
        message = await h.deliver(orjson.dumps([hit("a")]))
        async with asyncio.timeout(5):
            await message.acked.wait()
        assert loop.time() - started >= h.settings.batch_delay - 0.001
        assert [len(c) for c in h.store.calls] == [1]
    finally:
        await h.consumer.stop()


async def test_stop_stores_and_acks_what_is_held() -> None:
    h = Harness(FlakyStore(), batch_delay=3600)
    h.consumer.start()
    message = await h.deliver(orjson.dumps([hit("a")]))
    await h.consumer.stop()
    assert message.acked.is_set()
    assert len(h.store.calls) == 1


async def test_on_disconnect_forgets_held_messages() -> None:
    h = Harness(FlakyStore())
    message = await h.deliver(orjson.dumps([hit("a")]))
    h.consumer.on_disconnect()
    await h.consumer.flush()
    assert h.store.calls == []
    assert not message.acked.is_set()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class BlockingStore(FlakyStore):
    """Holds every insert until `release` is set: a hanging or failing database."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def insert_hits(self, events: list[Event]) -> int:
        self.entered.set()
        await self.release.wait()
        return await super().insert_hits(events)


def hit_received_at(email_id: str, received_at: datetime) -> dict[str, Any]:
    ts = received_at.isoformat()
    return make_envelope(new_event_id(), HIT_OPEN_V1, "acme", ts, ts, {"email_id": email_id})


async def test_lag_grows_while_a_batch_waits_for_the_database_then_is_the_stored_delay() -> None:
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    clock = Clock(t0)
    store = BlockingStore()
    settings = WriterSettings(common=CommonSettings(service="writer"), batch_delay=3600)
    consumer = HitConsumer(settings, store, clock=clock)
    consumer.dead_letters = FakeDeadLetters(Log())  # type: ignore[assignment]
    assert consumer.lag_seconds() == 0.0  # nothing received yet

    older, newer = t0, t0 + timedelta(seconds=2)
    body = orjson.dumps([hit_received_at("b", newer), hit_received_at("a", older)])
    message = FakeMessage(body, Log())
    await consumer.on_message(message)  # type: ignore[arg-type]
    clock.now = t0 + timedelta(seconds=5)
    assert consumer.lag_seconds() == 5.0  # held, not yet stored: age of the oldest hit

    flushing = asyncio.create_task(consumer.flush())
    await store.entered.wait()
    clock.now = t0 + timedelta(seconds=95)
    assert consumer.lag_seconds() == 95.0  # the insert hangs: the lag keeps growing

    clock.now = t0 + timedelta(seconds=100)
    store.release.set()
    await flushing
    assert message.acked.is_set()
    clock.now = t0 + timedelta(seconds=500)
    # Nothing waits: the last batch's delay, from its newest hit to when it was stored.
    assert consumer.lag_seconds() == 98.0


# --- a batch Postgres refuses for its data ----------------------------------------------


class PickyStore(FlakyStore):
    """Refuses, as Postgres would with a DataError, any insert holding an event of
    `refused` (by email id); fails the first `failures` inserts as if Postgres were away.
    Validation never sees this rule: what is split out is decided by the store alone."""

    def __init__(self, refused: set[str], failures: int = 0) -> None:
        super().__init__(failures)
        self.refused = refused

    async def insert_hits(self, events: list[Event]) -> int:
        if len(self.calls) >= self.failures:
            bad = [e.data.email_id for e in events if e.data.email_id in self.refused]
            if bad:
                self.calls.append(list(events))
                raise asyncpg.DataError(f"invalid input value for {bad[0]}")
        return await super().insert_hits(events)


def stored_ids(store: FlakyStore) -> list[str]:
    """Email ids of the inserts that succeeded, in order."""
    out = []
    for call in store.calls:
        ids = [e.data.email_id for e in call]
        if not set(ids) & getattr(store, "refused", set()):
            out += ids
    return out


async def test_refused_events_are_split_out_dead_lettered_and_the_rest_stored() -> None:
    store = PickyStore({"bad1", "bad2"})
    h = Harness(store)
    first = [hit("a"), hit("bad1"), hit("b"), hit("c")]
    second = [hit("d"), hit("e"), hit("bad2")]
    m1 = await h.deliver(orjson.dumps(first), "m1")
    m2 = await h.deliver(orjson.dumps(second), "m2")

    await h.consumer.flush()

    assert sorted(stored_ids(store)) == ["a", "b", "c", "d", "e"]
    # Every dead letter is out before any ack of the batch (the acks may then be one).
    assert h.log == ["dead-letter store", "dead-letter store", "ack m1", "ack m2"]
    dead = [(orjson.loads(m.body), m.headers) for m, _ in h.dead_letters.published]
    assert [body for body, _ in dead] == [[first[1]], [second[2]]]
    assert [headers["x-belfry-original-message-id"] for _, headers in dead] == ["m1", "m2"]
    assert dead[0][1]["x-belfry-reason"] == "DataError: invalid input value for bad1"
    assert m1.acked.is_set() and m2.acked.is_set()
    assert h.delays == [] and h.consumer.db_error is None  # not mistaken for an outage
    assert h.counter("belfry_writer_dead_lettered_total", {"stage": "store"}) == 2
    assert h.counter("belfry_writer_dead_lettered_total", {"stage": "decode"}) == 0


async def test_a_refused_event_is_dead_lettered_as_it_arrived() -> None:
    """Fields its contract ignores (a newer producer's) are not in the typed event, but
    are in the dead letter: it is the item as received, for a replay to store."""
    h = Harness(PickyStore({"bad"}))
    refused = hit("bad")
    refused["data"]["extra"] = {"kept": [1, 2]}
    refused["from_a_newer_producer"] = True
    await h.deliver(orjson.dumps([hit("a"), refused]), "m1")
    await h.consumer.flush()
    [(dead, _)] = h.dead_letters.published
    assert orjson.loads(dead.body) == [refused]


async def test_split_batch_halves_still_back_off_while_the_database_is_away() -> None:
    # Refused first (split), then the database goes away: that half waits, and retries.
    store = PickyStore({"bad"})
    h = Harness(store)
    await h.deliver(orjson.dumps([hit("a"), hit("bad"), hit("b"), hit("c")]), "m1")
    real_insert = store.insert_hits
    outages = [ConnectionError("gone"), TimeoutError()]

    async def insert_hits(events: list[Event]) -> int:
        if len(store.calls) == 1 and outages:  # after the first, refused, insert
            raise outages.pop(0)
        return await real_insert(events)

    store.insert_hits = insert_hits  # type: ignore[method-assign]
    await h.consumer.flush()

    assert sorted(stored_ids(store)) == ["a", "b", "c"]
    assert h.delays == [0.2, 0.4]
    assert h.errors_while_sleeping == ["ConnectionError: gone", "TimeoutError: timed out"]
    assert h.log == ["dead-letter store", "ack m1"]


async def test_an_item_too_deep_to_encode_alone_is_dead_lettered_with_its_message() -> None:
    # orjson reads 1024 levels but writes 254: the rejected item can't be a batch of its
    # own, so its whole message goes to the DLQ; before, the dead letter failed and the
    # message was never acked (a prefetch slot lost for good, redelivered on reconnect).
    h = Harness(FlakyStore())
    deep = b"[" * 300 + b"]" * 300
    body = b"[" + deep + b"," + orjson.dumps(hit("ok")) + b"]"
    message = await h.deliver(body, "m-deep")
    await h.consumer.flush()
    [(dead, _)] = h.dead_letters.published
    assert dead.body == body
    assert dead.headers is not None
    assert dead.headers["x-belfry-reason"] == (
        "envelope is not an object (the whole message: the item can't be re-encoded alone)"
    )
    assert [e.data.email_id for e in h.store.calls[0]] == ["ok"]
    assert message.acked.is_set()


async def test_a_check_that_breaks_on_odd_input_rejects_the_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.writer import handler

    real = handler.decode_event

    def validate(item: Any) -> Event:
        if isinstance(item, dict) and item["data"]["email_id"] == "odd":
            raise KeyError("boom")
        return real(item)

    monkeypatch.setattr(handler, "decode_event", validate)
    h = Harness(FlakyStore())
    # The 42 fails the one-pass decode, so each item is checked alone.
    message = await h.deliver(orjson.dumps([hit("odd"), 42, hit("ok")]))
    await h.consumer.flush()
    [(dead, _), (other, _)] = h.dead_letters.published
    assert dead.headers is not None and other.headers is not None
    assert dead.headers["x-belfry-reason"] == "validation failed: KeyError: 'boom'"
    assert other.headers["x-belfry-reason"] == "envelope is not an object"
    assert message.acked.is_set()


class FakeChannel:
    """Delivery tags as a broker channel keeps them: an ack settles its tag or, with
    `multiple`, every outstanding tag up to it; acking a tag not outstanding is an error
    (RabbitMQ closes the channel: PRECONDITION_FAILED, unknown delivery tag)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.outstanding: list[int] = []
        self.tags = 0

    def deliver(self) -> int:
        self.tags += 1
        self.outstanding.append(self.tags)
        return self.tags

    def ack(self, tag: int, multiple: bool) -> None:
        if tag not in self.outstanding:
            raise RuntimeError(f"unknown delivery tag {tag}")
        settled = [t for t in self.outstanding if t <= tag] if multiple else [tag]
        self.outstanding = [t for t in self.outstanding if t not in settled]
        self.log.append(f"ack {'up to ' if multiple else ''}{tag}")


class ChannelMessage(FakeMessage):
    def __init__(self, body: bytes, log: Log, message_id: str, channel: FakeChannel) -> None:
        super().__init__(body, log, message_id)
        self.channel = channel
        self.delivery_tag = channel.deliver()

    async def ack(self, multiple: bool = False) -> None:  # type: ignore[override]
        self.channel.ack(self.delivery_tag, multiple)
        self.acked.set()


class FailingDeadLetters(FakeDeadLetters):
    async def publish(self, message: aio_pika.Message, routing_key: str) -> None:
        raise ConnectionError("dead-letter exchange unreachable")


async def deliver_on(h: Harness, channel: FakeChannel, *bodies: bytes) -> None:
    for i, body in enumerate(bodies):
        message = ChannelMessage(body, h.log, f"m{channel.tags + 1}-{i}", channel)
        await h.consumer.on_message(message)  # type: ignore[arg-type]


async def test_a_stored_batch_is_acked_with_one_multiple_ack() -> None:
    h = Harness(FlakyStore())
    channel = FakeChannel(h.log)
    await deliver_on(h, channel, *(orjson.dumps([hit(f"e{i}")]) for i in range(3)))
    await h.consumer.flush()
    assert h.log == ["ack up to 3"]
    assert channel.outstanding == []


async def test_after_a_message_is_left_unacked_each_is_acked_alone_until_a_new_channel() -> None:
    """A message whose dead letter failed stays unacked (the broker redelivers it when
    the channel goes); a `multiple` ack after it would settle it too, and lose it."""
    h = Harness(FlakyStore())
    h.consumer.dead_letters = FailingDeadLetters(h.log)  # type: ignore[assignment]
    channel = FakeChannel(h.log)
    poisoned = orjson.dumps([hit("a"), {"type": "hit.open.v1"}])  # one item to dead-letter
    await deliver_on(h, channel, poisoned, orjson.dumps([hit("b")]), orjson.dumps([hit("c")]))
    await h.consumer.flush()
    assert h.log == ["ack 2", "ack 3"]
    await deliver_on(h, channel, orjson.dumps([hit("d")]), orjson.dumps([hit("e")]))
    await h.consumer.flush()
    assert h.log[2:] == ["ack 4", "ack 5"]
    assert channel.outstanding == [1]

    h.consumer.on_disconnect()
    fresh = FakeChannel(h.log)
    await deliver_on(h, fresh, orjson.dumps([hit("f")]), orjson.dumps([hit("g")]))
    await h.consumer.flush()
    assert h.log[4:] == ["ack up to 2"]
    assert fresh.outstanding == []
