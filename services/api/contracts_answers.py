"""Answers of the api built by other modules, as contract types: the stats figures
(services/api/queries.py), error events (repos/errors.py) and the console's JSON
(services/api/console/); the probes' are shared/probe_contracts.py. The OpenAPI document
(services/api/openapi.py) describes them from here; a module that builds one can encode
it from its type (stats: `Stats`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from services.api.console.health import LIST_MAX
from services.api.contracts import Count, Timestamp, Uuid
from shared import probe_contracts as probes

Bucket = Literal["hour", "day"]
MAX_GROUPS = 1000
MAX_SERIES = 3000

# --- stats ---------------------------------------------------------------------------


class KindStats(msgspec.Struct):
    """Opens or clicks: all, unique emails, those a person made, and the machines' by
    reason (services/api/README.md defines each)."""

    total: Count
    unique: Count
    human: Count
    unique_human: Count
    machine: Count
    machine_by_reason: dict[str, Count]


class Rates(msgspec.Struct):
    click_through: float | None
    click_to_open: float | None


class FirstOpenDelay(msgspec.Struct):
    median: float | None
    mean: float | None
    emails: Count


class TopLink(msgspec.Struct):
    url: str
    clicks: int
    human_clicks: int
    unique_emails: int


class SeriesPoint(msgspec.Struct):
    t: Timestamp
    human_opens: int
    machine_opens: int
    human_clicks: int
    machine_clicks: int


class Stats(msgspec.Struct):
    """The tenant's figures over [from, to), optionally of one email."""

    tenant: str
    email_id: str | None
    from_: Timestamp | None = msgspec.field(name="from")
    to: Timestamp | None
    bucket: Bucket
    registered_emails: Count
    opens: KindStats
    clicks: KindStats
    rates: Rates
    first_open_delay_seconds: FirstOpenDelay
    top_links: list[TopLink]
    series: Annotated[list[SeriesPoint], Meta(max_length=MAX_SERIES)]


# --- error events --------------------------------------------------------------------


class ErrorEvent(msgspec.Struct):
    id: Uuid
    fingerprint: str
    type: str
    message: str
    stack: str
    labels: dict[str, str]
    occurred_at: Timestamp
    received_at: Timestamp


class ErrorGroup(msgspec.Struct):
    """One fingerprint's count, first and last seen, and its latest error."""

    fingerprint: str
    count: Annotated[int, Meta(ge=1)]
    first_seen: Timestamp
    last_seen: Timestamp
    sample: ErrorEvent


class ErrorSample(msgspec.Struct):
    id: Uuid
    message: str


class ErrorStatsGroup(msgspec.Struct):
    fingerprint: str
    count: Annotated[int, Meta(ge=1)]
    first_seen: Timestamp
    last_seen: Timestamp
    type: str
    sample: ErrorSample


class ErrorStats(msgspec.Struct):
    from_: Timestamp = msgspec.field(name="from")
    to: Timestamp
    total: Count
    fingerprints: Count
    groups: Annotated[list[ErrorStatsGroup], Meta(max_length=MAX_GROUPS)]


# --- the console's health view (services/api/console/) -------------------------------


class Figures(msgspec.Struct):
    spool_bytes: float | UnsetType = UNSET
    metrics_spool_bytes: float | UnsetType = UNSET
    lag_seconds: float | UnsetType = UNSET


class ServiceHealth(msgspec.Struct):
    service: Literal["api", "ingest", "writer", "alerting"]
    url: str | None
    status: Literal["healthy", "degraded", "unhealthy", "down"]
    reason: Annotated[str, Meta(description="why it is down")] | UnsetType = UNSET
    latency_ms: float | UnsetType = UNSET
    health: (
        Annotated[dict[str, Any], Meta(description="the service's /health/detailed document")]
        | UnsetType
    ) = UNSET
    figures: Figures | UnsetType = UNSET


class QueueFigures(msgspec.Struct):
    name: str
    kind: Literal["work", "dead-letter", "delay"]
    depth: Count | UnsetType = UNSET
    consumers: Count | UnsetType = UNSET
    rate_per_second: float | UnsetType | None = UNSET
    replays_to: str | UnsetType = UNSET
    missing: str | UnsetType = UNSET


class BrokerHealth(msgspec.Struct):
    status: Literal["up", "down"]
    queues: list[QueueFigures]
    reason: str | UnsetType = UNSET


class ConsoleHealth(msgspec.Struct):
    generated_at: Timestamp
    services: list[ServiceHealth]
    broker: BrokerHealth


class DeadLetter(msgspec.Struct):
    message_id: str | UnsetType | None = UNSET
    reason: str | UnsetType | None = UNSET
    stage: str | UnsetType | None = UNSET
    failed_at: str | UnsetType | None = UNSET
    events: int | UnsetType | None = UNSET
    body: Annotated[str, Meta(description="its first 300 bytes")] | UnsetType = UNSET


class DeadLetters(msgspec.Struct):
    queue: str
    count: Count
    messages: list[DeadLetter]


Confirmable = Annotated[int, Meta(ge=1, le=LIST_MAX)]


class ReplayInput(msgspec.Struct):
    confirm: bool | UnsetType = UNSET
    limit: Confirmable | UnsetType = UNSET


class PurgeInput(msgspec.Struct):
    confirm: bool | UnsetType = UNSET


class Replayed(msgspec.Struct):
    queue: str
    replayed: Count
    to: str


class Purged(msgspec.Struct):
    queue: str
    purged: Count


TYPES: tuple[type[msgspec.Struct], ...] = (
    Stats,
    ErrorEvent,
    ErrorGroup,
    ErrorStats,
    *probes.TYPES,
    ConsoleHealth,
    DeadLetters,
    ReplayInput,
    PurgeInput,
    Replayed,
    Purged,
)
