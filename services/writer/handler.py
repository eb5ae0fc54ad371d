"""The writer's logic, free of the broker: split a batch into rows to store and events
to dead-letter, and store the rows. A unit test drives it with a fake store.

A message is decoded in one pass by the typed contracts of what the writer stores
(`batch_decoder`); only a message with something wrong in it is decoded again item by
item (`decode_event`), so each bad item is dead-lettered alone with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.writer.errors import error_text
from services.writer.store import STORED, EventStore
from shared.contracts import ContractError, Event, batch_decoder, decode_batch, decode_event

# Every type the writer stores, in one tagged union: a body of valid hits decodes in C.
_STORED_BATCH = batch_decoder(sorted(STORED))


@dataclass
class Rejected:
    item: Any
    reason: str


@dataclass
class DecodedMessage:
    """One AMQP message's events: the storable ones and the rejected ones."""

    events: list[Event] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    # Set when the whole body is unusable (not JSON, not an array).
    body_error: str | None = None


def decode_message(body: bytes) -> DecodedMessage:
    try:
        return DecodedMessage(_STORED_BATCH.decode(body))
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode_items(body)  # something is wrong: find what, item by item


def _decode_items(body: bytes) -> DecodedMessage:
    out = DecodedMessage()
    try:
        items = decode_batch(body)
    except ContractError as exc:
        out.body_error = str(exc)
        return out
    for item in items:
        try:
            event = decode_event(item)
        except ContractError as exc:
            out.rejected.append(Rejected(item, str(exc)))
            continue
        except Exception as exc:  # a check that broke on odd input: refuse it, don't wedge
            out.rejected.append(Rejected(item, f"validation failed: {error_text(exc)}"))
            continue
        if event.type not in STORED:
            out.rejected.append(Rejected(item, f"writer does not store {event.type} events"))
            continue
        out.events.append(event)
    return out


@dataclass(frozen=True)
class StoreResult:
    inserted: int
    duplicates: int


async def store_events(events: list[Event], store: EventStore) -> StoreResult:
    """Insert every event once; events seen before count as duplicates, not errors."""
    if not events:
        return StoreResult(0, 0)
    inserted = await store.insert_hits(events)
    return StoreResult(inserted, len(events) - inserted)
