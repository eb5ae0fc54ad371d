"""Error events in (pure part): `POST /v1/errors` items and OTLP log records with an
exception -> `error.v1` data (shared/errors_contract.py). No I/O: the routes
(services/ingest/routes/errors.py) read, authorize and publish.

`/v1/errors` item: `{"message"?, "type"?, "stack"?, "fingerprint"?, "labels"?, "ts"?,
"id"?}` (a type or a message is required). `ts`: RFC 3339 with an offset or epoch
seconds, not more than 5 minutes ahead nor older than the track age limit (default
now). `id` (a UUID in its canonical 8-4-4-4-12 spelling, with a non-null `ts`) makes
a retry idempotent, as on `/v1/track`.

OTLP logs: a log record becomes an error when it has `exception.type` or
`exception.message` (OpenTelemetry's exception semantic conventions, which the SDKs'
logging handlers set on `logger.exception(...)`); `exception.stacktrace` is its stack; the
record's body stands in for a missing message; its time is `time_unix_nano`, else
`observed_time_unix_nano`, else arrival. Other records are ignored (counted, not
refused). Resource attributes become labels as for metrics (`service.name` -> `service`,
services/ingest/intake/otlp_labels.py).

Both: an over-long message or stack is cut to the contract's bound (an error is worth
keeping even with a long stack); a bad type, fingerprint or label, a NUL, a bad time
refuse that error alone. A `tenant` label is the body's claim: kept as `exported_tenant`.
The fingerprint, when not given, is computed (`compute_fingerprint`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

import msgspec
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from services.ingest.contracts import ID_NEEDS_TS, NO_NUL, labels_schema, when_schema
from services.ingest.intake.otlp import encode_answer, read_otlp
from services.ingest.intake.otlp_json import _message as json_message
from services.ingest.intake.otlp_labels import attribute_text, resource_labels
from services.ingest.intake.result import IntakeError
from shared.errors_contract import (
    MAX_MESSAGE_LEN,
    MAX_STACK_LEN,
    ErrorData,
    compute_fingerprint,
    error_v1_data,
)
from shared.ids import new_event_id

FUTURE_SKEW = timedelta(minutes=5)
# An error envelope's encoded size at most: the hit publisher packs up to INGEST_BATCH_MAX
# (default 200) envelopes per AMQP message, which must stay under the broker's limit.
MAX_EVENT_BYTES = 64 * 1024
EXPORTED_TENANT = "exported_tenant"
# The canonical spelling only (as shared.contracts checks an envelope's id).
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"


class ErrorItem(msgspec.Struct, forbid_unknown_fields=True):
    """One `/v1/errors` item as sent (checked again as `ErrorData` once shaped)."""

    message: str = ""
    type: str = ""
    stack: str = ""
    fingerprint: str | None = None
    labels: dict[str, str] = {}
    ts: str | float | None = None
    id: Annotated[str, msgspec.Meta(pattern=_UUID_PATTERN)] | msgspec.UnsetType = msgspec.UNSET

    # How the OpenAPI document states it (services/ingest/openapi.py): the bounds the
    # contract checks once the error is shaped (`ErrorData`), as documentation.
    doc_schema: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": ["type"], "properties": {"type": {"minLength": 1}}},
            {"required": ["message"], "properties": {"message": {"minLength": 1}}},
        ],
        **ID_NEEDS_TS,
    }
    doc_fields: ClassVar[dict[str, dict[str, Any]]] = {
        "type": {"type": "string", "maxLength": 256, "pattern": NO_NUL},
        "message": {"type": "string", "pattern": NO_NUL, "description": "cut to 4096 characters"},
        "stack": {"type": "string", "pattern": NO_NUL, "description": "cut to 32 KiB"},
        "fingerprint": {
            "type": ["string", "null"],
            "pattern": "^[A-Za-z0-9_.:-]{1,128}$",
            "description": "absent: computed",
        },
        "labels": labels_schema(64, 2048, "names not starting with `__`", nullable=False),
        "ts": when_schema(
            "epoch seconds or RFC 3339 with an offset; at most 5 minutes ahead and not older"
            " than `TRACK_MAX_AGE_DAYS`; null or absent, the time of receipt",
            nullable=True,
        ),
        "id": {
            "type": "string",
            "pattern": _UUID_PATTERN.removesuffix("\\Z") + "$",
            "description": "with ts: a retry is stored once",
        },
    }


@dataclass(slots=True)
class Reported:
    """One error ready to publish."""

    event_id: str
    occurred_at: datetime
    data: ErrorData


@dataclass(slots=True)
class ErrorBatch:
    errors: list[Reported] = field(default_factory=list)
    # Refused one by one: {"index", "error"} (index: position in the request).
    problems: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0  # OTLP log records without an exception

    def refuse(self, index: int, reason: str) -> None:
        self.problems.append({"index": index, "error": reason[:300]})

    @property
    def message(self) -> str:
        if not self.problems:
            return ""
        first = self.problems[0]
        return f"{len(self.problems)} refused (e.g. #{first['index']}: {first['error']})"


class ErrorRefused(ValueError):
    pass


def shape(
    *,
    type_: str,
    message: str,
    stack: str,
    labels: dict[str, str],
    fingerprint: str | None,
) -> ErrorData:
    """The contract's data for one error (cut, renamed, fingerprinted), or ErrorRefused."""
    if "tenant" in labels:
        labels = {(EXPORTED_TENANT if k == "tenant" else k): v for k, v in labels.items()}
    message, stack = message[:MAX_MESSAGE_LEN], stack[:MAX_STACK_LEN]
    raw: dict[str, Any] = {"type": type_, "message": message, "stack": stack, "labels": labels}
    raw["fingerprint"] = fingerprint or compute_fingerprint(type_, stack, message)
    try:
        data = msgspec.convert(raw, ErrorData)
    except msgspec.ValidationError as exc:
        raise ErrorRefused(str(exc).replace("`$.", "`")) from None
    if len(orjson.dumps(error_v1_data(data))) > MAX_EVENT_BYTES:
        raise ErrorRefused(f"error larger than {MAX_EVENT_BYTES} bytes once encoded")
    return data


def _when(raw: str | float | None, now: datetime, max_age: timedelta) -> datetime:
    if raw is None:
        return now
    try:
        if isinstance(raw, str):
            at = datetime.fromisoformat(raw)
            if at.tzinfo is None:
                raise ErrorRefused("ts must carry a UTC offset")
            at = at.astimezone(UTC)
        else:
            at = datetime.fromtimestamp(raw, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        if isinstance(exc, ErrorRefused):
            raise
        raise ErrorRefused("ts must be an RFC 3339 timestamp or epoch seconds") from None
    return _in_window(at, now, max_age)


def _in_window(at: datetime, now: datetime, max_age: timedelta) -> datetime:
    if at > now + FUTURE_SKEW:
        raise ErrorRefused("ts is in the future")
    if at < now - max_age:
        raise ErrorRefused(f"ts is older than {max_age.days} days")
    return at


def _item(raw: Any, now: datetime, max_age: timedelta) -> Reported:
    try:
        item = msgspec.convert(raw, ErrorItem)
    except msgspec.ValidationError as exc:
        raise ErrorRefused(str(exc).replace("`$.", "`")) from None
    event_id = new_event_id()
    if item.id is not msgspec.UNSET:
        if item.ts is None:  # stored once per (id, occurred_at): a retry needs both
            raise ErrorRefused("ts is required when id is given")
        event_id = item.id.lower()
    at = _when(item.ts, now, max_age)
    data = shape(
        type_=item.type,
        message=item.message,
        stack=item.stack,
        labels=item.labels,
        fingerprint=item.fingerprint,
    )
    return Reported(event_id, at, data)


def decode_error_items(items: list[Any], now: datetime, max_age: timedelta) -> ErrorBatch:
    """`/v1/errors` items -> errors, each bad one refused alone with its index."""
    out = ErrorBatch()
    for index, raw in enumerate(items):
        try:
            out.errors.append(_item(raw, now, max_age))
        except ErrorRefused as exc:
            out.refuse(index, str(exc))
    return out


# --- OTLP logs ------------------------------------------------------------------------


def parse_logs_request(body: bytes, content_type: str) -> Any:
    doc = read_otlp(body, content_type, ExportLogsServiceRequest, "ExportLogsServiceRequest")
    if not isinstance(doc, dict):
        return doc
    # The metric intake's descriptor-driven reader: as strict (json_format.ParseDict takes
    # `"resourceLogs": ["AAA"]`), and what it accepts is OTLP/JSON's mapping.
    kwargs = json_message(doc, ExportLogsServiceRequest.DESCRIPTOR, 0)
    try:
        return ExportLogsServiceRequest(**kwargs)
    except (TypeError, ValueError, OverflowError) as exc:  # out-of-range integers, mostly
        raise IntakeError(f"not an OTLP/JSON logs request: {str(exc)[:200]}") from None


def decode_otlp_logs(
    body: bytes, content_type: str, now: datetime, max_age: timedelta, max_errors: int
) -> ErrorBatch:
    """Errors from an OTLP/HTTP logs body (already un-gzipped). Raises IntakeError."""
    request = parse_logs_request(body, content_type)
    out = ErrorBatch()
    index = -1
    for rl in request.resource_logs:
        raw_attributes = [kv.SerializeToString() for kv in rl.resource.attributes]
        labels = resource_labels(raw_attributes)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                index += 1
                exception = _exception(record)
                if exception is None:
                    out.ignored += 1
                elif isinstance(labels, tuple):
                    out.refuse(index, f"resource attributes: {labels[1]}")
                elif len(out.errors) >= max_errors:
                    out.refuse(index, f"more than {max_errors} errors in one request")
                else:
                    _record(out, index, record, exception, labels, now, max_age)
    return out


def _exception(record: Any) -> dict[str, str] | None:
    found = {}
    for kv in record.attributes:
        if kv.key in ("exception.type", "exception.message", "exception.stacktrace"):
            found[kv.key[10:]] = attribute_text(kv.value) or ""
    if not found.get("type") and not found.get("message"):
        return None
    return found


def _record(
    out: ErrorBatch,
    index: int,
    record: Any,
    exception: dict[str, str],
    labels: dict[str, str],
    now: datetime,
    max_age: timedelta,
) -> None:
    message = exception.get("message") or (attribute_text(record.body) or "")
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    try:
        at = now if not nanos else _in_window(_from_nanos(nanos), now, max_age)
        data = shape(
            type_=exception.get("type", ""),
            message=message,
            stack=exception.get("stacktrace", ""),
            labels=labels,
            fingerprint=None,
        )
    except ErrorRefused as exc:
        out.refuse(index, str(exc))
        return
    out.errors.append(Reported(new_event_id(), at, data))


def _from_nanos(nanos: int) -> datetime:
    try:
        return datetime.fromtimestamp(nanos // 1_000_000_000, UTC).replace(
            microsecond=nanos // 1000 % 1_000_000
        )
    except (ValueError, OverflowError, OSError):
        raise ErrorRefused("time_unix_nano is out of range") from None


def encode_logs_response(rejected: int, message: str, content_type: str) -> bytes:
    """`ExportLogsServiceResponse`, with `partial_success` only when some were refused."""
    response = ExportLogsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return encode_answer(response, content_type)
