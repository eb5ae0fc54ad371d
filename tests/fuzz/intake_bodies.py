"""Fuzz hooks for the metric intake routes (tests/fuzz/hooks.py calls `intake_case`).

The ingest token comes from the run's config (`[auth.openapi.IngestToken]`). Positive
cases, which schemathesis promises are valid, get what a schema cannot state: a real OTLP
or remote_write message for the binary bodies, and for `/v1/samples` a
`ts` of the last hour and the `le` / `quantile` label a bucket or quantile needs.
Negative cases go out as generated.
"""

from __future__ import annotations

import time
from typing import Any

import schemathesis
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from schemathesis import Case
from schemathesis.core.parameters import ParameterLocation
from schemathesis.transport.serialization import serialize_binary

from tests.support.remote_write import remote_write_body

INTAKE_PATHS = frozenset({"/v1/metrics", "/api/v1/write", "/v1/samples", "/v1/errors", "/v1/logs"})
# A positive case's protobuf body is this placeholder, a string that schemathesis's
# re-validation of a hook's body takes as `format: binary` (bytes it would take as
# invalid); the serializer below puts the real message on the wire in its place.
OTLP_PLACEHOLDER = "belfry-fuzz:otlp-request"
REMOTE_WRITE_PLACEHOLDER = "belfry-fuzz:remote-write-request"
LOGS_PLACEHOLDER = "belfry-fuzz:otlp-logs-request"


@schemathesis.serializer("application/x-protobuf")
def protobuf(_ctx: Any, value: Any) -> bytes:
    if value == OTLP_PLACEHOLDER:
        data: bytes = _otlp_request().SerializeToString()
        return data
    if value == LOGS_PLACEHOLDER:
        return ParseDict(_logs_json(), ExportLogsServiceRequest()).SerializeToString()
    if value == REMOTE_WRITE_PLACEHOLDER:
        now = int(time.time() * 1000)
        return remote_write_body([({"__name__": "fuzz_up"}, [(1.0, now)])])
    return serialize_binary(value)  # what schemathesis generated, as it would send it


def _otlp_request() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    attribute = rm.resource.attributes.add(key="service.name")
    attribute.value.string_value = "fuzz"
    metric = rm.scope_metrics.add().metrics.add(name="fuzz_gauge")
    metric.gauge.data_points.add(as_double=1.5, time_unix_nano=time.time_ns())
    return request


def _otlp_json() -> dict[str, Any]:
    return {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "fuzz"}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "fuzz_gauge",
                                "gauge": {
                                    "dataPoints": [
                                        {"asDouble": 1.5, "timeUnixNano": str(time.time_ns())}
                                    ]
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }


def _samples(items: Any) -> None:
    if not isinstance(items, list):
        return
    now = time.time()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if "ts" in item:
            item["ts"] = now - 60 - index
        labels = item.get("labels")
        needs = {"histogram_bucket": "le", "summary_quantile": "quantile"}.get(item.get("kind", ""))
        if needs and (not isinstance(labels, dict) or not labels.get(needs)):
            item["labels"] = {**(labels if isinstance(labels, dict) else {}), needs: "1"}


def _logs_json() -> dict[str, Any]:
    """An OTLP/JSON logs request with one exception record (an error) and a plain line."""
    exception = [
        {"key": "exception.type", "value": {"stringValue": "FuzzError"}},
        {"key": "exception.stacktrace", "value": {"stringValue": '  File "/f.py", line 1, in f'}},
    ]
    records = [
        {"timeUnixNano": str(time.time_ns()), "attributes": exception},
        {"body": {"stringValue": "a plain line"}},
    ]
    return {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}


def _errors(body: Any) -> None:
    """Positive `/v1/errors` items get a `ts` of the last hour where they have one."""
    items = body if isinstance(body, list) else [body]
    now = time.time()
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("ts") is not None:
            item["ts"] = now - 60 - index


def intake_case(case: Case, positive: bool) -> None:
    meta = case.meta
    # A case may be positive overall with a negative body (coverage phase): keep that body.
    if not positive or meta is None or meta.is_negative_at(ParameterLocation.BODY):
        return
    path = case.operation.path
    if path == "/api/v1/write":
        case.body = REMOTE_WRITE_PLACEHOLDER
        case.headers = {**(case.headers or {}), "Content-Encoding": "snappy"}
    elif path == "/v1/metrics":
        if case.media_type == "application/x-protobuf":
            case.body = OTLP_PLACEHOLDER
        else:
            case.body = _otlp_json()
    elif path == "/v1/samples":
        _samples(case.body)
    elif path == "/v1/errors":
        _errors(case.body)
    elif path == "/v1/logs":
        is_protobuf = case.media_type == "application/x-protobuf"
        case.body = LOGS_PLACEHOLDER if is_protobuf else _logs_json()
