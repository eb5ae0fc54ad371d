"""The answers of the probes every service serves (shared/probes.py), as contract types,
for each service's OpenAPI document (services/<name>/openapi.py)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]


class Status(msgspec.Struct):
    status: Literal["ok", "ready", "not ready"]
    reasons: Annotated[dict[str, str], Meta(description="why not ready")] | UnsetType = UNSET


class Health(msgspec.Struct):
    status: Literal["healthy", "unhealthy"]
    service: str
    version: str
    timestamp: Timestamp
    unhealthy: Annotated[list[str], Meta(description="the failing dependencies")] | UnsetType = (
        UNSET
    )


class Dependency(msgspec.Struct):
    status: Literal["healthy", "unhealthy"]
    latency_ms: float
    reason: str | UnsetType = UNSET


class Memory(msgspec.Struct):
    rss_bytes: int


class HealthDetailed(msgspec.Struct):
    status: Literal["healthy", "degraded", "unhealthy"]
    service: str
    version: str
    uptime_seconds: float
    memory: Memory
    dependencies: dict[str, Dependency]
    timestamp: Timestamp


TYPES: tuple[type[msgspec.Struct], ...] = (Status, Health, HealthDetailed)
