"""What the three metric intake routes share: who may write, reading a bounded body, and
storing admitted samples durably (services/ingest/intake/README.md, "Wiring a route").

Order: the token first and the declared length next, both before a byte of the body is
read; then the body, read up to its bound. aiohttp undoes `Content-Encoding: gzip`
(deflate, br, zstd) while the body streams, in bounded steps, so what is counted here is
the decompressed size: a gzip bomb stops at `intake_max_decoded_bytes`, never inflated
whole. Snappy (remote_write) is not an HTTP content coding to aiohttp: the remote_write
decoder reads its declared length before inflating it.

A 2xx means every admitted sample was confirmed by the broker or fsync'd to the metrics
spool (`store` awaits the publisher's outcome).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from services.ingest.intake.limits import Admission
from services.ingest.intake.result import BodyTooLarge, DecodeResult, IntakeError
from services.ingest.intake_publisher import MAX_EVENT_BYTES
from services.ingest.keys import INTAKE, Intake
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import Outcome
from services.ingest.routes.common import error, unauthorized
from shared.auth import bearer_token
from shared.contracts import make_envelope, now_iso
from shared.ids import new_event_id
from shared.ingest_tokens import verify_token
from shared.samples import METRIC_V2, Sample, metric_v2_datas

# Belfry's own figures come from its services only (metric.v1 self-reports).
RESERVED_TENANT = "belfry"
# A body's `tenant` label is kept as data under this name, never taken as the tenant.
EXPORTED_TENANT = "exported_tenant"
_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})


def authorize(request: web.Request) -> tuple[Intake, str] | web.Response:
    """The intake and the token's tenant, or the 401/403 that refuses the request."""
    intake = request.app[INTAKE]
    token = bearer_token(request)
    if token is None:
        return unauthorized("metric intake requires Authorization: Bearer <ingest token>")
    tenant = verify_token(intake.settings.token_keys, token)
    if tenant is None:
        return unauthorized("invalid or revoked ingest token")
    if tenant == RESERVED_TENANT:
        return error(403, "tenant 'belfry' is Belfry's own: its figures come from its services")
    return intake, tenant


IntakeHandler = Callable[[web.Request, Intake, str], Awaitable[web.Response]]


def authorized(handler: IntakeHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The route that answers `authorize`'s refusal itself, and hands `handler` the intake
    and the token's tenant otherwise."""

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.Response:
        auth = authorize(request)
        if isinstance(auth, web.Response):
            return auth
        return await handler(request, *auth)

    return route


def declared_too_large(request: web.Request, intake: Intake) -> str | None:
    limit = intake.settings.intake_max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        return f"body of {length} bytes is over {limit}"
    return None


async def read_body(request: web.Request, intake: Intake) -> bytes:
    """The (decompressed) body; BodyTooLarge past its bound, IntakeError if the
    content coding is broken."""
    settings = intake.settings
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    limit = (
        settings.intake_max_decoded_bytes if coding in _CODINGS else settings.intake_max_body_bytes
    )
    parts, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body is over {limit} bytes (after decompression)")
            parts.append(chunk)
    except BodyTooLarge:
        raise
    except Exception as exc:  # aiohttp's ContentEncodingError and friends
        raise IntakeError(f"body could not be read as {coding or 'sent'}: {exc}") from None
    return b"".join(parts)


async def read_items(
    request: web.Request, intake: Intake, noun: str, shape: str, *, lone: bool = False
) -> list[Any] | web.Response:
    """The body's JSON array of `noun` (with `lone`, a lone object stands for an array of
    one), at most INTAKE_MAX_ITEMS of them; else the 4xx that refuses it, `shape` saying
    what the body must be."""
    try:
        doc = orjson.loads(await read_body(request, intake))
    except IntakeError as exc:
        return error(exc.status, str(exc))
    except orjson.JSONDecodeError as exc:
        return error(400, f"body is not JSON: {exc}")
    items = [doc] if lone and isinstance(doc, dict) else doc
    if not isinstance(items, list):
        return error(400, shape)
    if not items:
        return error(400, f"no {noun} in the request")
    limit = intake.settings.intake_max_items
    if len(items) > limit:
        return error(413, f"more than {limit} {noun} in one request")
    return items


def unavailable(intake: Intake) -> bool:
    """Broker away and spool full: nothing could be stored (answer 503 before reading)."""
    return not intake.broker.available and intake.publisher.spool.full


@dataclass(slots=True)
class Stored:
    admission: Admission
    outcome: Outcome | None  # None: nothing to publish (all refused, or throttled)

    @property
    def rejected(self) -> int:
        return self.admission.rejected


async def store(intake: Intake, tenant: str, result: DecodeResult, protocol: str) -> Stored:
    """Admit the decoded samples under the tenant's limits, publish what passes, await
    its confirm-or-spool, count everything in /metrics."""
    metrics = intake.metrics
    count_refused(metrics, protocol, result.reasons)
    if result.dropped:
        metrics.samples.labels(protocol, "ignored").inc(result.dropped)
    admission = intake.limits.admit(tenant, result.samples)
    count_refused(metrics, protocol, admission.reasons)
    samples = _own_tenant(admission.samples)
    if not samples:
        return Stored(admission, None)
    now = now_iso()
    envelopes = [
        make_envelope(new_event_id(), METRIC_V2, tenant, now, now, data)
        for data in metric_v2_datas(samples, MAX_EVENT_BYTES)
    ]
    futures = intake.publisher.submit_many(envelopes)
    outcomes = await asyncio.gather(*dict.fromkeys(futures))
    worst = Outcome.DROPPED if Outcome.DROPPED in outcomes else None
    if worst is None:
        worst = Outcome.SPOOLED if Outcome.SPOOLED in outcomes else Outcome.PUBLISHED
    label = "unavailable" if worst is Outcome.DROPPED else worst.value
    metrics.samples.labels(protocol, label).inc(len(samples))
    return Stored(admission, worst)


def count_refused(metrics: IngestMetrics, protocol: str, reasons: dict[str, int]) -> None:
    """`belfry_ingest_samples_refused_total` += each reason's count."""
    for reason, count in reasons.items():
        metrics.samples_refused.labels(protocol, reason).inc(count)


def _own_tenant(samples: list[Sample]) -> list[Sample]:
    """A `tenant` label is the body's claim, not the tenant: kept as `exported_tenant`
    (as Prometheus keeps a clashing target label). Labels dicts are shared between
    samples of a series: one new dict per distinct dict, never a mutation."""
    renamed: dict[int, dict[str, str]] = {}
    out = samples
    for index, sample in enumerate(samples):
        labels = sample.labels
        if "tenant" not in labels:
            continue
        if out is samples:
            out = list(samples)
        new = renamed.get(id(labels))
        if new is None:
            new = renamed[id(labels)] = {
                (EXPORTED_TENANT if k == "tenant" else k): v for k, v in labels.items()
            }
        out[index] = Sample(sample.name, sample.value, sample.ts, new, sample.kind)
    return out


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
