"""BatchPublisher's batching and fallback logic, against a fake exchange and a real spool
in a temporary directory: no broker is involved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from services.ingest.publisher import BatchPublisher, Outcome, PublishObserver, merge_batches
from services.ingest.spool import Spool, read_segment
from shared.contracts import BATCH_V1

ROUTING_KEY = "hit.batch"


class FakeExchange:
    """Records published messages; can fail, or hold chosen publish calls on a gate."""

    def __init__(self) -> None:
        self.messages: list[tuple[aio_pika.Message, str]] = []  # in confirm order
        self.sent: list[Any] = []  # decoded bodies in publish order
        self.calls = 0
        self.fail = False
        self.gate = asyncio.Event()
        self.gated_calls: set[int] = set()
        self.entered = asyncio.Event()
        self.tasks: list[asyncio.Task[Any] | None] = []  # the task of each publish call
        self.on_call: Any = None  # called at each publish call, with the call's number

    async def publish(self, message: aio_pika.Message, routing_key: str, **_: Any) -> None:
        call = self.calls
        self.calls += 1
        self.tasks.append(asyncio.current_task())
        if self.on_call is not None:
            self.on_call(call)
        self.sent.append(orjson.loads(message.body) if message.body else None)
        self.entered.set()
        if call in self.gated_calls:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("channel closed")
        self.messages.append((message, routing_key))

    @property
    def bodies(self) -> list[Any]:
        return [orjson.loads(m.body) for m, _ in self.messages]


class Broker:
    """What the publisher's exchange getter sees: an exchange, or None while away."""

    def __init__(self) -> None:
        self.exchange: FakeExchange | None = FakeExchange()

    def __call__(self) -> Any:
        return self.exchange


class Observer(PublishObserver):
    def __init__(self) -> None:
        self.batches: list[tuple[int, Outcome]] = []
        self.replays: list[int] = []
        self.replay_done = asyncio.Event()

    def batch_done(self, size: int, outcome: Outcome, seconds: float) -> None:
        self.batches.append((size, outcome))

    def replayed(self, records: int) -> None:
        self.replays.append(records)
        self.replay_done.set()


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.broker = Broker()
        self.observer = Observer()
        self.publishers: list[BatchPublisher] = []
        self.spools: list[Spool] = []

    def publisher(self, spool_max_bytes: int = 1 << 20, **kwargs: Any) -> BatchPublisher:
        spool = Spool(self.tmp_path / f"spool{len(self.spools)}", spool_max_bytes)
        self.spools.append(spool)
        kwargs.setdefault("observer", self.observer)
        pub = BatchPublisher(self.broker, ROUTING_KEY, spool, app_id="ingest-test", **kwargs)
        self.publishers.append(pub)
        return pub

    @property
    def exchange(self) -> FakeExchange:
        assert self.broker.exchange is not None
        return self.broker.exchange


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    if h.broker.exchange is not None:
        h.broker.exchange.gate.set()
    for pub in h.publishers:
        await pub.close(timeout=5)
    for spool in h.spools:
        spool.close()


def event(n: int) -> dict[str, Any]:
    return {"id": f"id-{n}", "type": "hit.open.v1", "tenant": "acme", "data": {"n": n}}


def spooled_records(spool: Spool) -> list[Any]:
    return [
        orjson.loads(body)
        for path in sorted(spool.directory.glob("seg-*.spool"))
        for body in read_segment(path)
    ]


async def replay_finished(pub: BatchPublisher) -> None:
    """Wait for the running spool replay to end (its records confirmed, segments gone)."""
    task = pub._replay_task
    assert task is not None, "no replay was started"
    await task


async def let_other_tasks_run(turns: int = 10) -> None:
    """Yield to the loop a few times (not a timed wait)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_submits_in_one_loop_turn_become_one_message(harness: Harness) -> None:
    pub = harness.publisher()
    events = [event(i) for i in range(50)]
    futures = pub.submit_many(events)
    assert len(set(map(id, futures))) == 1
    assert await futures[0] is Outcome.PUBLISHED

    [(message, routing_key)] = harness.exchange.messages
    assert routing_key == ROUTING_KEY
    assert orjson.loads(message.body) == events
    assert message.headers == {"x-belfry-events": 50}
    assert message.type == BATCH_V1
    assert message.app_id == "ingest-test"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id
    assert harness.observer.batches == [(50, Outcome.PUBLISHED)]


async def test_max_batch_splits_into_several_messages_in_order(harness: Harness) -> None:
    pub = harness.publisher(max_batch=3)
    futures = pub.submit_many([event(i) for i in range(7)])
    assert futures[0] is futures[2]
    assert futures[3] is futures[5]
    assert futures[2] is not futures[3]
    assert futures[5] is not futures[6]
    assert await asyncio.gather(*futures) == [Outcome.PUBLISHED] * 7

    assert harness.exchange.bodies == [
        [event(0), event(1), event(2)],
        [event(3), event(4), event(5)],
        [event(6)],
    ]
    assert [m.headers for m, _ in harness.exchange.messages] == [
        {"x-belfry-events": 3},
        {"x-belfry-events": 3},
        {"x-belfry-events": 1},
    ]


async def held_batch_and_waiting(
    harness: Harness, waiting: int
) -> tuple[asyncio.Future[Outcome], list[asyncio.Future[Outcome]]]:
    """One batch (event 0) published and held unconfirmed, and `waiting` more events
    submitted behind it (eager_in_flight=1, max_delay an hour: they wait for its confirm)."""
    pub = harness.publisher(eager_in_flight=1, max_delay=3600)
    harness.exchange.gated_calls = {0}
    first = pub.submit(event(0))
    await harness.exchange.entered.wait()
    return first, pub.submit_many([event(n) for n in range(1, waiting + 1)])


async def test_events_queued_while_confirms_outstanding_go_together_when_confirmed(
    harness: Harness,
) -> None:
    # One batch in flight reaches eager_in_flight=1, so later events wait (max_delay is an
    # hour) until the confirm comes back, then leave as one message.
    first, later = await held_batch_and_waiting(harness, 3)
    await let_other_tasks_run()
    assert harness.exchange.messages == []
    assert not later[0].done()

    harness.exchange.gate.set()
    assert await first is Outcome.PUBLISHED
    assert await later[0] is Outcome.PUBLISHED
    assert harness.exchange.bodies == [[event(0)], [event(1), event(2), event(3)]]


async def test_the_batch_waiting_for_a_confirm_leaves_in_the_same_turn_before_answers(
    harness: Harness,
) -> None:
    # At load a loop turn holds dozens of requests' work: the next batch goes from the
    # task that got the confirm, not from a new task a turn later, and the confirmed
    # batch's requests are answered after it is on its way.
    first, later = await held_batch_and_waiting(harness, 2)
    answered_before_next_publish: list[bool] = []
    harness.exchange.on_call = lambda call: answered_before_next_publish.append(first.done())

    harness.exchange.gate.set()
    assert await later[0] is Outcome.PUBLISHED
    assert await first is Outcome.PUBLISHED
    assert answered_before_next_publish == [False]
    assert harness.exchange.tasks[1] is harness.exchange.tasks[0]
    assert harness.exchange.bodies == [[event(0)], [event(1), event(2)]]


async def test_broker_unavailable_spools_the_batch(harness: Harness) -> None:
    pub = harness.publisher()
    harness.broker.exchange = None
    fut = pub.submit(event(1))
    assert await fut is Outcome.SPOOLED
    assert pub.spool.pending() is True
    assert spooled_records(pub.spool) == [[event(1)]]
    assert harness.observer.batches == [(1, Outcome.SPOOLED)]


async def test_publish_error_spools_the_batch(harness: Harness) -> None:
    pub = harness.publisher()
    harness.exchange.fail = True
    assert await pub.submit(event(1)) is Outcome.SPOOLED
    assert harness.exchange.messages == []
    await pub.close()  # stops the replay attempt that the spooling kicked off
    assert pub.spool.pending() is True
    assert spooled_records(pub.spool) == [[event(1)]]


async def test_confirm_timeout_spools_the_batch(harness: Harness) -> None:
    pub = harness.publisher(confirm_timeout=0.05)
    harness.exchange.gated_calls = {0, 1, 2}  # the confirm never comes
    assert await pub.submit(event(1)) is Outcome.SPOOLED
    await pub.close()
    assert spooled_records(pub.spool) == [[event(1)]]


async def test_spool_full_and_broker_away_drops_the_batch(harness: Harness) -> None:
    pub = harness.publisher(spool_max_bytes=16)
    harness.broker.exchange = None
    assert await pub.submit(event(1)) is Outcome.DROPPED
    assert pub.spool.pending() is False
    assert harness.observer.batches == [(1, Outcome.DROPPED)]


async def test_spool_full_and_publish_failing_drops_the_batch(harness: Harness) -> None:
    pub = harness.publisher(spool_max_bytes=16)
    harness.exchange.fail = True
    assert await pub.submit(event(1)) is Outcome.DROPPED


async def test_kick_replay_drains_spool_through_exchange_once_available(
    harness: Harness,
) -> None:
    pub = harness.publisher()
    exchange = harness.exchange
    harness.broker.exchange = None
    assert await pub.submit(event(1)) is Outcome.SPOOLED
    assert await pub.submit(event(2)) is Outcome.SPOOLED
    pub.kick_replay()  # broker still away: nothing to drain into
    assert exchange.calls == 0

    harness.broker.exchange = exchange
    pub.kick_replay()
    await replay_finished(pub)
    # Both spooled batches go out as one message, in order.
    assert harness.observer.replays == [2]
    assert exchange.bodies == [[event(1), event(2)]]
    assert [m.headers for m, _ in exchange.messages] == [{"x-belfry-replayed": True}]
    assert pub.spool.pending() is False


async def test_while_spool_pending_new_batches_are_spooled_to_keep_order(
    harness: Harness,
) -> None:
    pub = harness.publisher()
    exchange = harness.exchange
    harness.broker.exchange = None
    assert await pub.submit(event(1)) is Outcome.SPOOLED
    assert await pub.submit(event(2)) is Outcome.SPOOLED

    # Broker is back, but older events wait in the spool: this batch queues behind them
    # and its append kicks the replay.
    harness.broker.exchange = exchange
    assert await pub.submit(event(3)) is Outcome.SPOOLED
    await replay_finished(pub)
    assert exchange.bodies == [[event(1), event(2), event(3)]]

    # Spool empty again: straight to the exchange.
    assert await pub.submit(event(4)) is Outcome.PUBLISHED
    assert exchange.bodies[-1] == [event(4)]
    assert exchange.messages[-1][0].headers == {"x-belfry-events": 1}


async def test_batch_is_not_dropped_while_broker_is_up_and_replay_runs(
    harness: Harness,
) -> None:
    exchange = harness.exchange
    harness.broker.exchange = None
    record = len(orjson.dumps([event(1)])) + 8
    pub = harness.publisher(spool_max_bytes=record)
    assert await pub.submit(event(1)) is Outcome.SPOOLED
    assert pub.spool.full is True

    harness.broker.exchange = exchange
    exchange.gated_calls = {0}  # the replay's first publish waits for its confirm
    pub.kick_replay()
    await exchange.entered.wait()
    later = pub.submit(event(2))  # the spool is full: it waits for the replay's tail
    await let_other_tasks_run()
    exchange.gate.set()
    await replay_finished(pub)
    assert await later is Outcome.PUBLISHED


async def test_spool_mode_keeps_batching_instead_of_flushing_each_event(
    harness: Harness,
) -> None:
    # Issue 13: with the broker away each spool append ends fast, so eager flushing made
    # one-event batches (~1.2 per record) that replay then had to send one by one.
    pub = harness.publisher(max_delay=3600)
    harness.broker.exchange = None
    assert await pub.submit(event(1)) is Outcome.SPOOLED  # the first one finds out
    second = pub.submit(event(2))
    await let_other_tasks_run()
    assert not second.done(), "a spool-mode batch must fill up, not leave at once"
    third = pub.submit(event(3))
    assert third is second
    pub.flush()
    assert await third is Outcome.SPOOLED
    assert spooled_records(pub.spool) == [[event(1)], [event(2), event(3)]]


async def test_replay_sends_many_records_per_message_and_many_messages_in_flight(
    harness: Harness,
) -> None:
    record = len(orjson.dumps([event(0)]))
    # Room for two records per message: six spooled batches become three messages.
    pub = harness.publisher(replay_message_bytes=2 * record + 1, max_delay=0)
    exchange = harness.exchange
    harness.broker.exchange = None
    for n in range(6):
        assert await pub.submit(event(n)) is Outcome.SPOOLED
    exchange.gated_calls = {0}  # the first message's confirm is slow...
    harness.broker.exchange = exchange
    pub.kick_replay()
    await exchange.entered.wait()
    await let_other_tasks_run()
    assert exchange.calls == 3, "...and the others go out meanwhile"
    assert harness.observer.replays == [2, 2]  # counted as confirmed
    assert pub.spool.pending() is True  # the segment stays until every record is confirmed
    exchange.gate.set()
    await replay_finished(pub)
    assert exchange.sent == [[event(0), event(1)], [event(2), event(3)], [event(4), event(5)]]
    assert sorted(harness.observer.replays) == [2, 2, 2]
    assert pub.spool.pending() is False


async def test_a_batch_arriving_while_the_spool_tail_replays_goes_directly_after_it(
    harness: Harness,
) -> None:
    # Issue 13: new batches were spooled while anything was spooled, so under steady
    # load the spool never emptied. Now they wait for the last records, then publish.
    pub = harness.publisher()
    exchange = harness.exchange
    harness.broker.exchange = None
    assert await pub.submit(event(1)) is Outcome.SPOOLED
    exchange.gated_calls = {0}  # the replay of the tail waits for its confirm
    harness.broker.exchange = exchange
    pub.kick_replay()
    await exchange.entered.wait()
    later = pub.submit(event(2))
    await let_other_tasks_run()
    assert exchange.calls == 1, "the new batch must not overtake the spooled one"
    exchange.gate.set()
    assert await later is Outcome.PUBLISHED
    assert exchange.bodies == [[event(1)], [event(2)]]
    assert pub.spool.appended == 1
    assert pub.spool.pending() is False


async def test_a_failed_tail_replay_spools_the_waiting_batch_behind_it(
    harness: Harness,
) -> None:
    pub = harness.publisher(confirm_timeout=0.05)
    exchange = harness.exchange
    harness.broker.exchange = None
    assert await pub.submit(event(1)) is Outcome.SPOOLED
    exchange.gated_calls = {0, 1}  # neither the replay nor the new batch is confirmed
    harness.broker.exchange = exchange
    pub.kick_replay()
    await exchange.entered.wait()
    assert await pub.submit(event(2)) is Outcome.SPOOLED
    assert spooled_records(pub.spool) == [[event(1)], [event(2)]]


async def test_while_confirms_time_out_new_batches_are_spooled_without_waiting(
    harness: Harness,
) -> None:
    # A frozen broker: the replay's publish hangs until the confirm timeout. New batches
    # must not wait behind it (pixels would hang a confirm timeout per replay attempt).
    pub = harness.publisher(confirm_timeout=1.0)
    exchange = harness.exchange
    exchange.gated_calls = set(range(100))
    assert await pub.submit(event(1)) is Outcome.SPOOLED  # timed out: replay kicked
    if exchange.calls < 2:  # the replay reads the spool in a thread first
        exchange.entered.clear()
        await exchange.entered.wait()
    assert exchange.calls == 2  # the batch, then the replay of its record, hanging
    assert await pub.submit(event(2)) is Outcome.SPOOLED
    assert exchange.calls == 2, "the second batch must not have waited for the replay"


async def test_readiness_fails_while_confirms_do_not_come_back(harness: Harness) -> None:
    now = [0.0]
    pub = harness.publisher(confirm_timeout=0.05, clock=lambda: now[0])
    exchange = harness.exchange
    assert await pub.submit(event(1)) is Outcome.PUBLISHED
    assert await pub.check() is None  # a confirm just came back: no probe needed
    assert exchange.calls == 1

    exchange.gated_calls = set(range(1, 100))  # frozen: batches, replays and probes hang
    assert await pub.submit(event(2)) is Outcome.SPOOLED
    assert await pub.check() == "broker not confirming: no publisher confirm within 0.05s"

    exchange.gate.set()  # thawed: the next probe is confirmed
    assert await pub.check() is None
    [(probe, _key)] = [(m, k) for m, k in exchange.messages if k == "belfry.readiness-probe"]
    assert probe.body == b""


async def test_readiness_probes_an_idle_broker(harness: Harness) -> None:
    now = [100.0]
    pub = harness.publisher(confirm_timeout=0.05, clock=lambda: now[0])
    exchange = harness.exchange
    exchange.gated_calls = {0}
    assert await pub.check() == "broker not confirming: no publisher confirm within 0.05s"
    assert await pub.check() is None  # call 1 is confirmed
    now[0] += 0.01
    assert await pub.check() is None  # recent confirm: no second probe
    assert exchange.calls == 2


async def test_dropped_batches_log_one_line_per_interval_saying_why(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    pub = harness.publisher(spool_max_bytes=16)
    harness.broker.exchange = None
    for n in range(5):
        assert await pub.submit(event(n)) is Outcome.DROPPED
    lines = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in lines] == [
        "batch dropped: broker unavailable and spool full: 0 of 16 bytes used"
    ]


def test_merge_batches_joins_arrays_up_to_the_bound_in_order() -> None:
    a, b, c = b'[{"n":1}]', b'[{"n":2},{"n":3}]', b'[{"n":4}]'
    assert list(merge_batches([a, b, c], 1 << 20)) == [(b'[{"n":1},{"n":2},{"n":3},{"n":4}]', 3)]
    assert list(merge_batches([a, b, c], 20)) == [
        (b'[{"n":1}]', 1),
        (b'[{"n":2},{"n":3}]', 1),
        (b'[{"n":4}]', 1),
    ]
    # Not a JSON array: alone and untouched, between its neighbours.
    assert list(merge_batches([a, b"junk", c, b"[]"], 1 << 20)) == [
        (a, 1),
        (b"junk", 1),
        (c, 1),
        (b"[]", 1),
    ]
    merged = b"".join(body for body, _ in merge_batches([a, b, c], 1 << 20))
    assert orjson.loads(merged) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]


async def test_close_flushes_the_open_batch(harness: Harness) -> None:
    # With no eager slot the batch would wait max_delay (an hour) before leaving.
    pub = harness.publisher(eager_in_flight=0, max_delay=3600)
    fut = pub.submit(event(1))
    await let_other_tasks_run()
    assert not fut.done()
    await pub.close()
    assert fut.done()
    assert fut.result() is Outcome.PUBLISHED
    assert harness.exchange.bodies == [[event(1)]]


async def test_close_waits_for_in_flight_confirms(harness: Harness) -> None:
    pub = harness.publisher()
    harness.exchange.gated_calls = {0}
    fut = pub.submit(event(1))
    await harness.exchange.entered.wait()

    closing = asyncio.create_task(pub.close())
    await let_other_tasks_run()
    assert not closing.done()
    assert not fut.done()

    harness.exchange.gate.set()
    await closing
    assert fut.done()
    assert fut.result() is Outcome.PUBLISHED


async def test_submit_after_close_raises(harness: Harness) -> None:
    pub = harness.publisher()
    await pub.close()
    with pytest.raises(RuntimeError, match="publisher is closed"):
        pub.submit(event(1))


async def test_flush_with_nothing_open_is_a_no_op(harness: Harness) -> None:
    pub = harness.publisher()
    pub.flush()
    await pub.close()
    assert harness.exchange.calls == 0


def test_outcome_values_are_stable() -> None:
    # Metrics label values come from these.
    assert [o.value for o in Outcome] == ["published", "spooled", "dropped"]


async def test_only_a_batch_with_a_sampled_hit_carries_a_traceparent(harness: Harness) -> None:
    """The producer span's context goes to the writer only for a batch it recorded; an
    unsampled request's context (or none, on the pixel fast path) adds no header, so the
    writer links nothing and starts no span for that batch."""
    provider = TracerProvider(sampler=ALWAYS_ON)
    tracer = provider.get_tracer("test")
    pub = harness.publisher(tracer=tracer)
    unsampled = NonRecordingSpan(
        SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    )
    with trace.use_span(unsampled):
        assert await pub.submit(event(1)) is Outcome.PUBLISHED
    assert await pub.submit(event(2), None) is Outcome.PUBLISHED
    sampled = tracer.start_span("GET /{tenant}/pixel/{email_id}.gif")
    assert await pub.submit(event(3), sampled) is Outcome.PUBLISHED
    sampled.end()
    headers = [dict(message.headers or {}) for message, _ in harness.exchange.messages]
    assert ["traceparent" in h for h in headers] == [False, False, True]
    traceparent = headers[2]["traceparent"]
    assert traceparent.startswith(f"00-{sampled.get_span_context().trace_id:032x}-")
    assert harness.exchange.bodies[2][0]["trace"]["traceparent"].startswith(traceparent[:35])
    provider.shutdown()
