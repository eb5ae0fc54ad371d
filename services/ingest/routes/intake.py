"""The metric intake routes: each protocol at its standard path, answered in its own terms
(services/ingest/intake/README.md has the answer table).

- `POST /v1/metrics`: OTLP/HTTP metrics, `application/x-protobuf` or `application/json`
  (gzip accepted); 200 `ExportMetricsServiceResponse` in the request's encoding, with
  `partial_success` when points were refused; errors as a `google.rpc.Status`.
- `POST /api/v1/write`: Prometheus remote_write 1.0 (snappy `WriteRequest`); 204, or 400
  naming what was refused after storing the rest (Prometheus does not resend a 400).
- `POST /v1/samples`: `[{"name", "value", "labels"?, "ts"?, "kind"?}]`; 202
  `{"accepted", "rejected"}`, or 400 with per-item `errors` after storing the valid ones
  (as `/v1/track` answers).

All three: `Authorization: Bearer <ingest token>` (401 without a valid one, 403 for the
`belfry` tenant); the tenant is the token's. Over the tenant's rate: 429 + Retry-After,
nothing stored. Broker away and spool full: 503 + Retry-After.
"""

from __future__ import annotations

import time

from aiohttp import web

from services.ingest.contracts import Accepted, Error, ItemProblem, SamplesPartlyRefused
from services.ingest.intake import otlp
from services.ingest.intake import remote_write as rw
from services.ingest.intake.plain import decode_plain
from services.ingest.intake.result import DecodeResult, IntakeError
from services.ingest.keys import Intake
from services.ingest.publisher import Outcome
from services.ingest.routes.common import error, typed_response
from services.ingest.routes.intake_flow import (
    Stored,
    authorized,
    declared_too_large,
    read_body,
    read_items,
    retry_after,
    store,
    unavailable,
)

_RESOURCE_EXHAUSTED, _UNAVAILABLE = 8, 14  # google.rpc.Code
_OTLP_TYPES = frozenset({otlp.PROTOBUF, "application/protobuf", otlp.JSON})
_UNAVAILABLE_TEXT = "temporarily unable to store samples; retry later"
_SAMPLES_SHAPE = 'body must be a JSON array of {"name", "value"} samples'


def _message(result: DecodeResult, stored: Stored) -> str:
    return "; ".join(m for m in (result.message, stored.admission.message) if m)


# --- OTLP/HTTP ------------------------------------------------------------------------


def _otlp_error(
    status: int, message: str, content_type: str, code: int = 3, wait: float = 0
) -> web.Response:
    headers = {"Retry-After": retry_after(wait)} if status in (429, 503) else None
    return web.Response(
        status=status,
        body=otlp.encode_otlp_status(message, content_type, code),
        content_type=otlp.response_content_type(content_type),
        headers=headers,
    )


@authorized
async def otlp_metrics(request: web.Request, intake: Intake, tenant: str) -> web.Response:
    ct = request.headers.get("Content-Type", "")
    if otlp.media_type(ct) not in _OTLP_TYPES:
        return _otlp_error(415, f"content type must be {otlp.PROTOBUF} or {otlp.JSON}", ct)
    too_large = declared_too_large(request, intake)
    if too_large:
        return _otlp_error(413, too_large, ct)
    wait = intake.settings.retry_after_seconds
    if unavailable(intake):
        return _otlp_error(503, _UNAVAILABLE_TEXT, ct, _UNAVAILABLE, wait)
    try:
        result = otlp.decode_otlp_metrics(await read_body(request, intake), ct)
    except IntakeError as exc:
        return _otlp_error(exc.status, str(exc), ct)
    stored = await store(intake, tenant, result, "otlp")
    if stored.admission.throttled:
        message = stored.admission.message
        return _otlp_error(429, message, ct, _RESOURCE_EXHAUSTED, stored.admission.retry_after)
    if stored.outcome is Outcome.DROPPED:
        return _otlp_error(503, _UNAVAILABLE_TEXT, ct, _UNAVAILABLE, wait)
    rejected = result.rejected + stored.rejected
    return web.Response(
        body=otlp.encode_otlp_response(rejected, _message(result, stored), ct),
        content_type=otlp.response_content_type(ct),
    )


# --- Prometheus remote_write ----------------------------------------------------------


def _remote_write_type_problem(request: web.Request) -> str | None:
    """remote_write 1.0 only: protobuf, snappy, and no `proto=` naming 2.0's message."""
    media, _, params = request.headers.get("Content-Type", "").partition(";")
    if media.strip().lower() not in ("", otlp.PROTOBUF, "application/protobuf"):
        return "content type must be application/x-protobuf (remote_write 1.0)"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto" and value.strip() != "prometheus.WriteRequest":
            return "only remote_write 1.0 (prometheus.WriteRequest) is supported"
    coding = request.headers.get("Content-Encoding", "snappy").strip().lower()
    if coding not in ("snappy", ""):
        return "remote_write bodies must be snappy-compressed (Content-Encoding: snappy)"
    return None


@authorized
async def remote_write(request: web.Request, intake: Intake, tenant: str) -> web.Response:
    problem = _remote_write_type_problem(request)
    if problem:
        return error(415, problem)
    refused = _before_reading(request, intake)
    if refused:
        return refused
    try:
        body = await read_body(request, intake)
        result = rw.decode_remote_write(
            body, max_uncompressed=intake.settings.intake_max_decoded_bytes
        )
    except IntakeError as exc:
        return error(exc.status, str(exc))
    stored = await _store(intake, tenant, result, "remote_write")
    if isinstance(stored, web.Response):
        return stored
    if result.rejected or stored.rejected:
        return error(400, _message(result, stored))  # the rest is stored
    return web.Response(status=204)


def _retry(status: int, message: str, wait: float) -> web.Response:
    return typed_response(Error(message), status, {"Retry-After": retry_after(wait)})


def _before_reading(request: web.Request, intake: Intake) -> web.Response | None:
    """413 for a declared length over the bound, 503 when nothing could be stored."""
    too_large = declared_too_large(request, intake)
    if too_large:
        return error(413, too_large)
    if unavailable(intake):
        return _retry(503, _UNAVAILABLE_TEXT, intake.settings.retry_after_seconds)
    return None


async def _store(
    intake: Intake, tenant: str, result: DecodeResult, protocol: str
) -> Stored | web.Response:
    """Stored, or the 429 (over the tenant's rate) or 503 (dropped) that says to retry."""
    stored = await store(intake, tenant, result, protocol)
    if stored.admission.throttled:
        return _retry(429, stored.admission.message, stored.admission.retry_after)
    if stored.outcome is Outcome.DROPPED:
        return _retry(503, _UNAVAILABLE_TEXT, intake.settings.retry_after_seconds)
    return stored


# --- the plain JSON form --------------------------------------------------------------


@authorized
async def samples(request: web.Request, intake: Intake, tenant: str) -> web.Response:
    refused = _before_reading(request, intake)
    if refused:
        return refused
    items = await read_items(request, intake, "samples", _SAMPLES_SHAPE)
    if isinstance(items, web.Response):
        return items
    result = decode_plain(items, time.time_ns() // 1_000_000)
    stored = await _store(intake, tenant, result, "samples")
    if isinstance(stored, web.Response):
        return stored
    accepted = len(stored.admission.samples)
    if result.errors or stored.rejected:
        answer = SamplesPartlyRefused(
            accepted,
            len(items) - accepted,
            [ItemProblem(e["index"], e["error"]) for e in result.errors[:100]],
        )
        if stored.rejected:
            answer.limits = stored.admission.message
        return typed_response(answer, 400)
    return typed_response(Accepted(accepted, 0), 202)
