"""The thin adapter between the metrics queue and the engine's sample windows.

A message is a `batch.v1` array of `metric.v1` envelopes (one sample each: Belfry's
self-reports; time = occurred_at) or `metric.v2` envelopes (a list of typed samples from
the metric intake, shared/samples.py; time = each sample's `ts`). Every sample goes into
the windows under its envelope's tenant, never later than now, with its kind (what `rate`
and the quantiles need); the message is acked once its samples are in the windows.
Messages are handled one at a time, in delivery order, yielding to the event loop between
envelopes. A batch of valid `metric.v2` envelopes is decoded in one msgspec pass (names
and label sets checked once per distinct one: shared.samples.SampleBatchDecoder); any
other batch is checked envelope by envelope. A body that isn't a JSON array
is dead-lettered whole, each bad event alone (with `x-belfry-reason`), so one bad event
never costs the batch. A NUL character in the name or labels is a bad event too: the labels
become an alert row's jsonb, which Postgres refuses, and every tick would fail. Samples
are journaled to Postgres by the engine (sample_log.py), so windows survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.alerting.evaluator import AlertEngine
from services.alerting.metrics import AlertingMetrics, unserved
from shared.contracts import METRIC_V1, ContractError, decode_batch, decode_event
from shared.contracts_types import MetricV1
from shared.deadletter import dead_letter_message
from shared.samples import (
    METRIC_V2,
    MetricEnvelope,
    SampleBatchDecoder,
    SampleContractError,
    SampleTuple,
)
from shared.topology import Topology
from shared.tracing import links_to, messaging_attributes, traceparent

log = logging.getLogger("belfry.alerting.consumer")


def _storable(data: MetricV1) -> None:
    if "\x00" in data.name or any("\x00" in k or "\x00" in v for k, v in data.labels.items()):
        raise ContractError("data.name and data.labels must not contain NUL characters")


class MetricConsumer:
    def __init__(
        self,
        engine: AlertEngine,
        topo: Topology,
        tracer: trace.Tracer | None = None,
        metrics: AlertingMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics or unserved()  # the app's (shared.prom); served nowhere: tests
        self.topo = topo
        self.tracer = tracer
        self.dead_letters: AbstractExchange | None = None
        self.messages = 0
        self.samples = 0
        self._decoder = SampleBatchDecoder()
        # One message at a time, in delivery order (a series' samples arrive in time
        # order); the broker hands over up to `prefetch` at once, each its own task.
        self._turn = asyncio.Lock()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with self._turn:
            await self._process(message)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            if self.tracer is None:
                await self._handle(message, None)
            else:
                await self._traced(message)
            await message.ack()
        except Exception as exc:
            # A bug, or a dead-letter publish that failed: let the broker dead-letter the
            # message (queue DLX) rather than hold it unacked; if the channel is gone,
            # the broker redelivers it anyway.
            log.warning("metric message not processed", extra={"error": str(exc)[:300]})
            with contextlib.suppress(Exception):
                await message.nack(requeue=False)
        self.messages += 1

    async def _traced(self, message: AbstractIncomingMessage) -> None:
        assert self.tracer is not None
        try:
            items = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            items = []
        carriers: list[Any] = [dict(message.headers or {})]
        if isinstance(items, list):
            carriers += [i.get("trace") for i in items if isinstance(i, dict)]
        attributes = messaging_attributes(
            self.topo.metrics_exchange,
            message.routing_key or "",
            "process",
            len(items) if isinstance(items, list) else 0,
            queue=self.topo.alerting_queue,
        )
        with self.tracer.start_as_current_span(
            f"process {self.topo.alerting_queue}",
            kind=SpanKind.CONSUMER,
            links=links_to(c if isinstance(c, dict) else None for c in carriers),
            attributes=attributes,
        ) as span:
            ctx = span.get_span_context()
            await self._handle(message, {"traceparent": traceparent(ctx)} if ctx.is_valid else None)

    async def _handle(
        self, message: AbstractIncomingMessage, carrier: dict[str, str] | None
    ) -> None:
        try:
            envelopes = self._decoder.decode(message.body)
        except SampleContractError:
            pass  # not all valid metric.v2: envelope by envelope, below
        else:
            for index, (tenant, samples) in enumerate(envelopes):
                if index:
                    # A message may hold tens of thousands of samples: let the broker
                    # connection (heartbeats, RPC replies on this channel) and the
                    # ticks run between envelopes, or a starved RPC closes the channel.
                    await asyncio.sleep(0)
                self._observe_samples(tenant, samples, carrier)
            return
        try:
            items = decode_batch(message.body)
        except ContractError as exc:
            await self._dead_letter(message.body, str(exc), "decode", message)
            return
        for item in items:
            if isinstance(item, dict) and item.get("type") == METRIC_V2:
                try:
                    self._observe_v2(msgspec.convert(item, MetricEnvelope), carrier)
                except msgspec.ValidationError as exc:
                    reason = str(exc).replace("`$.", "`")[:300]
                    await self._dead_letter(orjson.dumps([item]), reason, "validate", message)
                continue
            try:
                envelope = decode_event(item)  # the typed contract of its type and version
                if envelope.type != METRIC_V1:
                    raise ContractError(f"{envelope.type} is not a metric event")
                _storable(envelope.data)
            except ContractError as exc:
                await self._dead_letter(orjson.dumps([item]), str(exc), "validate", message)
                continue
            data: MetricV1 = envelope.data
            kept = self.engine.observe(
                envelope.tenant, data.name, data.labels, envelope.occurred_at, data.value, carrier
            )
            (self.metrics.samples_kept if kept else self.metrics.samples_ignored).inc()
            self.samples += 1

    def _observe_v2(self, envelope: MetricEnvelope, carrier: dict[str, str] | None) -> None:
        samples = [(s.name, s.labels, s.ts, s.value, s.kind) for s in envelope.data.samples]
        self._observe_samples(envelope.tenant, samples, carrier)

    def _observe_samples(
        self, tenant: str, samples: Sequence[SampleTuple], carrier: dict[str, str] | None
    ) -> None:
        kept = self.engine.observe_samples(tenant, samples, carrier)
        self.metrics.samples_kept.inc(kept)
        self.metrics.samples_ignored.inc(len(samples) - kept)
        self.samples += len(samples)

    async def _dead_letter(
        self, body: bytes, reason: str, stage: str, source: AbstractIncomingMessage
    ) -> None:
        if self.dead_letters is None:
            raise ConnectionError("dead-letter exchange not declared")
        await self.dead_letters.publish(
            dead_letter_message(body, reason, stage, source, self.topo.alerting_queue),
            self.topo.ALERTING_DLQ_KEY,
        )
        self.metrics.dead_lettered.labels(stage).inc()
        log.warning(
            "dead-lettered",
            extra={"reason": reason[:300], "stage": stage, "queue": self.topo.alerting_dlq},
        )
