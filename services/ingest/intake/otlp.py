"""OTLP/HTTP metrics (`ExportMetricsServiceRequest`, protobuf or JSON) -> `metric.v2` samples.

Each OTLP metric becomes series the way Prometheus's OTLP translator makes them, so rules
read the same either way (names: dots and other characters -> `_`; no unit or `_total`
suffix is appended: a rule names what the application named):

- gauge -> `name`, kind `gauge`;
- sum, cumulative and monotonic -> `name`, kind `counter` (`rate` handles resets);
  cumulative, not monotonic (an UpDownCounter) -> `gauge`;
  delta and monotonic -> `counter_delta` (each value is an increase: turning deltas into
  totals would need per-series state in ingest, which has none and runs several copies);
  delta and not monotonic -> refused (`unsupported`: send cumulative);
- histogram (explicit buckets), cumulative -> `name_bucket{le="<bound>"}` (cumulative
  counts, last `le="+Inf"` = the count), `name_count`, `name_sum` (counters), so
  `histogram_quantile` works on the buckets; delta histograms are refused (`unsupported`:
  set OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative);
- exponential histogram -> refused (`unsupported`): it would make up to 160 bucket series
  per point, and the SDKs make explicit-bucket histograms by default;
- summary -> `name{quantile="<q>"}` (kind `summary_quantile`), `name_count`, `name_sum`.

Labels: services/ingest/intake/otlp_labels.py. A point flagged "no recorded value" is
dropped (not an error); a point with a non-finite value, a bad label or no value is
refused alone, counted in `rejected` (OTLP's `rejected_data_points`: one per data point,
however many samples it would have made). Timestamps: `time_unix_nano` floored to ms; 0
(unset) is the receive time. Exemplars are ignored (so OTLP/JSON's hex trace ids, read
as base64, do no harm). OTLP/JSON is read by otlp_json.py into the same message, so
both encodings go through one mapping.
"""

from __future__ import annotations

import itertools
import time
from math import isfinite
from typing import Any

import msgspec
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from services.ingest import contracts
from services.ingest.intake.names import format_float, otlp_metric_name
from services.ingest.intake.otlp_json import parse_json_request
from services.ingest.intake.otlp_labels import point_labels, resource_labels
from services.ingest.intake.otlp_schema import RawExportMetricsServiceRequest
from services.ingest.intake.protos import RpcStatus
from services.ingest.intake.result import (
    BAD_NAME,
    BAD_POINT,
    NON_FINITE,
    TOO_MANY_SAMPLES,
    UNSUPPORTED,
    DecodeResult,
    IntakeError,
    UnsupportedMediaType,
)
from shared.samples import MAX_NAME_LEN, Kind, Sample

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
# Samples one request may make: a histogram point of 1,000 buckets is ~16 kB of protobuf
# and 1,002 samples, so this bounds memory where the body size alone would not.
MAX_SAMPLES = 200_000
_DELTA, _CUMULATIVE = 1, 2
_NO_RECORDED_VALUE = 1
_INVALID_ARGUMENT = 3  # google.rpc.Code


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def read_otlp(body: bytes, content_type: str, message: Any, what: str) -> Any:
    """An OTLP/HTTP body: a protobuf one parsed as `message` (a generated class), a JSON
    one as its top-level object (a dict, for the caller's OTLP/JSON reader). IntakeError
    if undecodable, UnsupportedMediaType if neither protobuf nor JSON."""
    media = media_type(content_type)
    if media in _PROTOBUF_TYPES:
        try:
            return message.FromString(body)
        except DecodeError as exc:
            raise IntakeError(f"body is not an OTLP {what}: {exc}") from None
    if media != JSON:
        raise UnsupportedMediaType(f"content type must be {PROTOBUF} or {JSON}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IntakeError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise IntakeError(f"body is not an OTLP/JSON {what} object")
    return doc


def parse_request(body: bytes, content_type: str) -> Any:
    """The request, parsed with the raw-attributes schema (otlp_schema.py)."""
    what = "ExportMetricsServiceRequest"
    parsed = read_otlp(body, content_type, RawExportMetricsServiceRequest, what)
    if not isinstance(parsed, dict):
        return parsed
    request = parse_json_request(parsed)
    # One decoding path: the JSON-read message re-read as the raw-attributes schema.
    return RawExportMetricsServiceRequest.FromString(request.SerializeToString())


def decode_otlp_metrics(
    body: bytes, content_type: str, *, now_ms: int | None = None, max_samples: int = MAX_SAMPLES
) -> DecodeResult:
    """Samples from an OTLP/HTTP metrics body (already un-gzipped). Raises IntakeError."""
    request = parse_request(body, content_type)
    out = _Decoding(now_ms if now_ms is not None else time.time_ns() // 1_000_000, max_samples)
    for rm in request.resource_metrics:
        base = resource_labels(rm.resource.attributes)
        if isinstance(base, tuple):
            points = sum(_point_count(m) for sm in rm.scope_metrics for m in sm.metrics)
            out.reject(*base, count=points)
            continue
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _metric(out, metric, base)
    return out


class _Decoding(DecodeResult):
    """A DecodeResult being filled, with what the filling needs."""

    __slots__ = ("max_samples", "now_ms")

    def __init__(self, now_ms: int, max_samples: int) -> None:
        super().__init__()
        self.now_ms = now_ms
        self.max_samples = max_samples

    def room(self, count: int) -> bool:
        if len(self.samples) + count <= self.max_samples:
            return True
        self.reject(TOO_MANY_SAMPLES, f"more than {self.max_samples} samples in one request")
        return False

    def start(
        self, name: str, point: Any, base: dict[str, str], count: int
    ) -> tuple[dict[str, str], int] | None:
        """The point's labels and ms timestamp, or None if it is dropped or refused, or
        its `count` samples would not fit in the request's bound."""
        if point.flags & _NO_RECORDED_VALUE:
            self.dropped += 1
            return None
        labels = point_labels(base, point.attributes)
        if isinstance(labels, tuple):
            self.reject(labels[0], f"{name}: {labels[1]}")
            return None
        if not self.room(count):
            return None
        return labels, point.time_unix_nano // 1_000_000 or self.now_ms


def _point_count(metric: Any) -> int:
    which = metric.WhichOneof("data")
    return len(getattr(metric, which).data_points) if which else 0


def _sum_kind(data: Any) -> Kind | None:
    if data.aggregation_temporality == _CUMULATIVE:
        return "counter" if data.is_monotonic else "gauge"
    if data.aggregation_temporality == _DELTA and data.is_monotonic:
        return "counter_delta"
    return None


def _metric(out: _Decoding, metric: Any, base: dict[str, str]) -> None:
    which = metric.WhichOneof("data")
    if which is None:
        return
    data = getattr(metric, which)
    points = data.data_points
    name = otlp_metric_name(metric.name)
    if name is None or len(name) > MAX_NAME_LEN - len("_bucket"):
        out.reject(BAD_NAME, f"metric name {metric.name[:60]!r}", len(points))
        return
    if which == "gauge":
        _numbers(out, name, points, base, "gauge")
    elif which == "sum":
        kind = _sum_kind(data)
        if kind is None:
            out.reject(
                UNSUPPORTED,
                f"{name}: a delta or unspecified non-monotonic sum (send cumulative)",
                len(points),
            )
        else:
            _numbers(out, name, points, base, kind)
    elif which == "histogram":
        if data.aggregation_temporality != _CUMULATIVE:
            out.reject(UNSUPPORTED, f"{name}: a delta histogram (send cumulative)", len(points))
        else:
            for point in points:
                _histogram(out, name, point, base)
    elif which == "summary":
        for point in points:
            _summary(out, name, point, base)
    else:
        out.reject(
            UNSUPPORTED, f"{name}: an exponential histogram (use explicit buckets)", len(points)
        )


def _numbers(out: _Decoding, name: str, points: Any, base: dict[str, str], kind: Kind) -> None:
    for point in points:
        which = point.WhichOneof("value")
        if which is None and not point.flags & _NO_RECORDED_VALUE:
            out.reject(BAD_POINT, f"{name}: a data point without a value")
            continue
        value = point.as_double if which == "as_double" else float(point.as_int)
        if not isfinite(value) and not point.flags & _NO_RECORDED_VALUE:
            out.reject(NON_FINITE, f"{name}: value {value}")
            continue
        started = out.start(name, point, base, 1)
        if started is not None:
            out.samples.append(Sample(name, value, started[1], started[0], kind))


def _histogram(out: _Decoding, name: str, point: Any, base: dict[str, str]) -> None:
    counts = point.bucket_counts
    bounds = list(point.explicit_bounds)
    problem = None
    if counts and len(counts) != len(bounds) + 1:
        problem = "bucket_counts must be one longer than explicit_bounds"
    elif not all(isfinite(b) for b in bounds) or any(a >= b for a, b in itertools.pairwise(bounds)):
        problem = "explicit_bounds must be finite and increasing"
    elif point.HasField("sum") and not isfinite(point.sum):
        problem = "sum is not finite"
    if problem and not point.flags & _NO_RECORDED_VALUE:
        out.reject(BAD_POINT if "sum" not in problem else NON_FINITE, f"{name}: {problem}")
        return
    started = out.start(name, point, base, len(counts) + 2)
    if started is None:
        return
    labels, ts = started
    add = out.samples.append
    bucket = name + "_bucket"
    running = 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        add(
            Sample(
                bucket,
                float(running),
                ts,
                {**labels, "le": format_float(bound)},
                "histogram_bucket",
            )
        )
    if counts:
        add(Sample(bucket, float(point.count), ts, {**labels, "le": "+Inf"}, "histogram_bucket"))
    add(Sample(name + "_count", float(point.count), ts, labels, "counter"))
    if point.HasField("sum"):
        add(Sample(name + "_sum", point.sum, ts, labels, "counter"))


def _summary(out: _Decoding, name: str, point: Any, base: dict[str, str]) -> None:
    quantiles = point.quantile_values
    if not point.flags & _NO_RECORDED_VALUE:
        if not all(0.0 <= q.quantile <= 1.0 for q in quantiles):
            out.reject(BAD_POINT, f"{name}: a quantile outside [0, 1]")
            return
        if not isfinite(point.sum):
            out.reject(NON_FINITE, f"{name}: sum {point.sum}")
            return
    started = out.start(name, point, base, len(quantiles) + 2)
    if started is None:
        return
    labels, ts = started
    add = out.samples.append
    for q in quantiles:
        if isfinite(q.value):
            add(
                Sample(
                    name,
                    q.value,
                    ts,
                    {**labels, "quantile": format_float(q.quantile)},
                    "summary_quantile",
                )
            )
        else:  # NaN: no observations in the window; "no data", not an error
            out.dropped += 1
    add(Sample(name + "_count", float(point.count), ts, labels, "counter"))
    add(Sample(name + "_sum", point.sum, ts, labels, "counter"))


def response_content_type(content_type: str) -> str:
    """Answer in the request's encoding; JSON when the request's can't be told."""
    return PROTOBUF if media_type(content_type) in _PROTOBUF_TYPES else JSON


def encode_otlp_response(rejected: int, message: str, content_type: str) -> bytes:
    """The body of a 200 answer: `ExportMetricsServiceResponse`, with `partial_success`
    only when something was refused (the spec wants it unset otherwise)."""
    response = ExportMetricsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = message
    return encode_answer(response, content_type)


def encode_answer(response: Message, content_type: str) -> bytes:
    """An OTLP Export*ServiceResponse in the request's encoding."""
    if response_content_type(content_type) == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def encode_otlp_status(message: str, content_type: str, code: int = _INVALID_ARGUMENT) -> bytes:
    """The body of a 4xx/5xx answer: a `google.rpc.Status` (OTLP/HTTP's error body)."""
    if response_content_type(content_type) == PROTOBUF:
        return RpcStatus(code=code, message=message).SerializeToString()
    return msgspec.json.encode(contracts.RpcStatus(code, message))
