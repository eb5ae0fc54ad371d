"""Error intake: `POST /v1/errors` (JSON) and `POST /v1/logs` (OTLP/HTTP logs, protobuf or
JSON, gzip accepted). Decoding: services/ingest/intake/errors.py.

Who may write, and the order of checks, as for the metric intake (routes/intake_flow.py):
`Authorization: Bearer <ingest token>` (401; 403 for tenant `belfry`), the declared
length (413) before a byte is read, the body read up to its (decompressed) bound.

Each error becomes one `error.v1` envelope of the token's tenant, published through the
hit publisher (routing key `hit.batch`, which the writer's `hit.#` binding covers, so
errors share the hits' confirm-or-spool and the writer's exactly-once insert). With them,
one `errors_total{fingerprint, service?}` sample per group of the request (kind
`counter_delta`: the count of that request's errors) goes to the metrics exchange through
the intake's publisher, under the tenant's sample limits, so rules can watch error
counts. A 2xx means both were broker-confirmed or spooled. Over the tenant's sample rate:
429, nothing stored. A retry stores an error once when it carries `id` + `ts`, but counts
it again in `errors_total` (the counter counts deliveries).

Answers: `/v1/errors` as `/v1/track`: 202 `{"accepted", "rejected"}`, 400 with per-item
`errors` after storing the valid ones. `/v1/logs`: 200 `ExportLogsServiceResponse`, with
`partial_success` (`rejected_log_records`) for refused exception records; records without
an exception are ignored. Counted in `/metrics`: `belfry_ingest_errors_total{protocol,
outcome}` (published, spooled, unavailable, refused, ignored), and the counts' samples as
the metric intake's (`belfry_ingest_samples_total`, `..._samples_refused_total`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from datetime import timedelta

from aiohttp import web

from services.ingest.contracts import Accepted, Error, ItemProblem, PartlyRefused
from services.ingest.intake import otlp
from services.ingest.intake.errors import (
    ErrorBatch,
    decode_error_items,
    decode_otlp_logs,
    encode_logs_response,
)
from services.ingest.intake.result import IntakeError
from services.ingest.intake_publisher import MAX_EVENT_BYTES
from services.ingest.keys import HOT, Hot, Intake
from services.ingest.publisher import Outcome
from services.ingest.routes.common import typed_response
from services.ingest.routes.intake_flow import (
    authorized,
    count_refused,
    declared_too_large,
    read_body,
    read_items,
    retry_after,
)
from shared.contracts import make_envelope
from shared.errors_contract import ERROR_V1, error_v1_data
from shared.ids import new_event_id
from shared.samples import METRIC_V2, Sample, metric_v2_datas

COUNT_METRIC = "errors_total"
_UNAVAILABLE_TEXT = "temporarily unable to store errors; retry later"
_ERRORS_SHAPE = "body must be an error object or a JSON array of them"
_RESOURCE_EXHAUSTED, _UNAVAILABLE = 8, 14  # google.rpc.Code


class _Refusal(Exception):
    """Nothing stored: the request is answered `status` (+ Retry-After `wait`)."""

    def __init__(self, status: int, message: str, wait: float, code: int) -> None:
        super().__init__(message)
        self.status, self.wait, self.code = status, wait, code


@authorized
async def errors(request: web.Request, intake: Intake, tenant: str) -> web.Response:
    hot = request.app[HOT]
    refused = _before_reading(request, intake, hot)
    if refused is not None:
        return _json_refusal(refused)
    items = await read_items(request, intake, "errors", _ERRORS_SHAPE, lone=True)
    if isinstance(items, web.Response):
        return items
    batch = decode_error_items(items, hot.clock(), _max_age(hot))
    try:
        await _publish(intake, hot, tenant, batch, "errors")
    except _Refusal as exc:
        return _json_refusal(exc)
    accepted = len(batch.errors)
    if batch.problems:
        listed = [ItemProblem(p["index"], p["error"]) for p in batch.problems[:100]]
        return typed_response(PartlyRefused(accepted, len(batch.problems), listed), 400)
    return typed_response(Accepted(accepted, 0), 202)


@authorized
async def otlp_logs(request: web.Request, intake: Intake, tenant: str) -> web.Response:
    hot = request.app[HOT]
    ct = request.headers.get("Content-Type", "")
    if otlp.media_type(ct) not in (otlp.PROTOBUF, "application/protobuf", otlp.JSON):
        return _otlp_status(415, f"content type must be {otlp.PROTOBUF} or {otlp.JSON}", ct)
    refused = _before_reading(request, intake, hot)
    if refused is not None:
        return _otlp_refusal(refused, ct)
    try:
        body = await read_body(request, intake)
        batch = decode_otlp_logs(
            body, ct, hot.clock(), _max_age(hot), intake.settings.intake_max_items
        )
    except IntakeError as exc:
        return _otlp_status(exc.status, str(exc), ct)
    try:
        await _publish(intake, hot, tenant, batch, "otlp_logs")
    except _Refusal as exc:
        return _otlp_refusal(exc, ct)
    return web.Response(
        body=encode_logs_response(len(batch.problems), batch.message, ct),
        content_type=otlp.response_content_type(ct),
    )


# --- shared steps ---------------------------------------------------------------------


def _before_reading(request: web.Request, intake: Intake, hot: Hot) -> _Refusal | None:
    too_large = declared_too_large(request, intake)
    if too_large:
        return _Refusal(413, too_large, 0, 3)
    spools_full = hot.publisher.spool.full or intake.publisher.spool.full
    if not intake.broker.available and spools_full:
        return _Refusal(503, _UNAVAILABLE_TEXT, hot.settings.retry_after_seconds, _UNAVAILABLE)
    return None


def _max_age(hot: Hot) -> timedelta:
    return timedelta(days=hot.settings.track_max_age_days)


def _counts(batch: ErrorBatch, now_ms: int) -> list[Sample]:
    """One `errors_total` increase per (fingerprint, service) of the request."""
    tally: Tally[tuple[str, str | None]] = Tally(
        (e.data.fingerprint, e.data.labels.get("service")) for e in batch.errors
    )
    out = []
    for (fingerprint, service), count in tally.items():
        labels = {"fingerprint": fingerprint}
        if service:
            labels["service"] = service
        out.append(Sample(COUNT_METRIC, float(count), now_ms, labels, "counter_delta"))
    return out


async def _publish(intake: Intake, hot: Hot, tenant: str, batch: ErrorBatch, protocol: str) -> None:
    """Publish the errors and their counts, awaiting confirm-or-spool; _Refusal if the
    tenant is over its sample rate (nothing published) or nothing could be stored."""
    metrics = intake.metrics
    metrics.errors.labels(protocol, "refused").inc(len(batch.problems))
    metrics.errors.labels(protocol, "ignored").inc(batch.ignored)
    if not batch.errors:
        return
    admission = intake.limits.admit(tenant, _counts(batch, time.time_ns() // 1_000_000))
    count_refused(metrics, protocol, admission.reasons)
    if admission.throttled:
        wait = admission.retry_after
        raise _Refusal(429, admission.message, wait, _RESOURCE_EXHAUSTED)
    received = hot.clock().isoformat()
    envelopes = [
        make_envelope(
            e.event_id, ERROR_V1, tenant, e.occurred_at.isoformat(), received, error_v1_data(e.data)
        )
        for e in batch.errors
    ]
    futures = hot.publisher.submit_many(envelopes)
    if admission.samples:
        futures += intake.publisher.submit_many(
            [
                make_envelope(new_event_id(), METRIC_V2, tenant, received, received, data)
                for data in metric_v2_datas(admission.samples, MAX_EVENT_BYTES)
            ]
        )
    outcomes = await asyncio.gather(*dict.fromkeys(futures))
    if Outcome.DROPPED in outcomes:
        metrics.errors.labels(protocol, "unavailable").inc(len(batch.errors))
        raise _Refusal(503, _UNAVAILABLE_TEXT, hot.settings.retry_after_seconds, _UNAVAILABLE)
    stored = Outcome.SPOOLED if Outcome.SPOOLED in outcomes else Outcome.PUBLISHED
    metrics.errors.labels(protocol, stored.value).inc(len(batch.errors))
    metrics.samples.labels(protocol, stored.value).inc(len(admission.samples))


# --- answers --------------------------------------------------------------------------


def _json_refusal(refusal: _Refusal) -> web.Response:
    headers = {"Retry-After": retry_after(refusal.wait)} if refusal.status in (429, 503) else None
    return typed_response(Error(str(refusal)), refusal.status, headers)


def _otlp_status(status: int, message: str, content_type: str, code: int = 3) -> web.Response:
    return web.Response(
        status=status,
        body=otlp.encode_otlp_status(message, content_type, code),
        content_type=otlp.response_content_type(content_type),
    )


def _otlp_refusal(refusal: _Refusal, content_type: str) -> web.Response:
    response = _otlp_status(refusal.status, str(refusal), content_type, refusal.code)
    if refusal.status in (429, 503):
        response.headers["Retry-After"] = retry_after(refusal.wait)
    return response
