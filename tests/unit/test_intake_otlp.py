"""OTLP/HTTP metrics bodies -> samples: the wire shape the OpenTelemetry SDK really sends,
OTLP/JSON, and hand-built hostile edge cases; and the answer bodies."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from services.ingest.intake.otlp import (
    decode_otlp_metrics,
    encode_otlp_response,
    encode_otlp_status,
    response_content_type,
)
from services.ingest.intake.result import DecodeResult, IntakeError, UnsupportedMediaType
from shared.samples import MAX_LABELS, Sample

PB = "application/x-protobuf"
JSON = "application/json"
NOW_MS = 1_764_560_000_000
T_NS = 1_764_560_123_456_789_012
RESOURCE = {
    "service.name": "checkout",
    "service.instance.id": "pod-7",
    "host.name": "node-1",
    "deployment.environment": "prod",
    "process.pid": 4242,
    "telemetry.sdk.language": "python",
}


def _sdk_body(
    record: Any, *, temporality: dict[type, AggregationTemporality] | None = None, **reader: Any
) -> bytes:
    """What the SDK's OTLP/HTTP exporter would POST after `record(meter)`."""
    metric_reader = InMemoryMetricReader(preferred_temporality=temporality or {})
    provider = MeterProvider(
        metric_readers=[metric_reader], resource=Resource.create(RESOURCE), **reader
    )
    record(provider.get_meter("shop"))
    body: bytes = encode_metrics(metric_reader.get_metrics_data()).SerializeToString()
    provider.shutdown()
    return body


def _by_name(result: DecodeResult) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for sample in result.samples:
        out.setdefault(sample.name, []).append(sample)
    return out


BASE = {"service": "checkout", "instance": "pod-7", "deployment_environment": "prod"}


def test_what_the_sdk_sends_becomes_prometheus_shaped_series() -> None:
    def record(meter: Any) -> None:
        meter.create_counter("http.requests").add(3, {"http.route": "/pay", "code": 200})
        meter.create_up_down_counter("db.connections").add(7)
        meter.create_gauge("queue.depth").set(1200, {"queue": "mail"})
        latency = meter.create_histogram("api.latency", unit="ms")
        for value in (12.0, 240.0, 700.0):
            latency.record(value, {"http.route": "/pay"})

    result = decode_otlp_metrics(_sdk_body(record), PB)
    assert (result.rejected, result.dropped, result.message) == (0, 0, "")
    series = _by_name(result)

    [requests] = series["http_requests"]
    assert requests.kind == "counter" and requests.value == 3.0
    # Resource: service and instance mapped, process/telemetry attributes left out.
    assert requests.labels == {**BASE, "http_route": "/pay", "code": "200"}
    assert 1_700_000_000_000 < requests.ts < 4_000_000_000_000  # ms, not ns
    assert series["db_connections"][0].kind == "gauge"  # an UpDownCounter
    assert series["queue_depth"][0].value == 1200.0

    buckets = series["api_latency_bucket"]
    assert all(b.kind == "histogram_bucket" for b in buckets)
    by_le = {b.labels["le"]: b.value for b in buckets}
    # Cumulative, as histogram_quantile needs; SDK default bounds 0, 5, 10, 25, ...
    assert by_le["10"] == 0 and by_le["25"] == 1 and by_le["250"] == 2 and by_le["750"] == 3
    assert by_le["+Inf"] == 3 and list(by_le.values()) == sorted(by_le.values())
    assert series["api_latency_count"][0].value == 3
    assert series["api_latency_count"][0].kind == "counter"
    assert series["api_latency_sum"][0].value == 952.0
    assert "le" not in series["api_latency_sum"][0].labels


def test_delta_counters_are_kept_as_deltas_and_delta_histograms_refused() -> None:
    def record(meter: Any) -> None:
        meter.create_counter("jobs.done").add(5)
        meter.create_histogram("job.seconds").record(1.5, {"queue": "a"})
        meter.create_histogram("job.seconds").record(2.5, {"queue": "b"})

    delta = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    result = decode_otlp_metrics(_sdk_body(record, temporality=delta), PB)
    assert [(s.name, s.kind, s.value) for s in result.samples] == [
        ("jobs_done", "counter_delta", 5.0)
    ]
    assert result.rejected == 2 and result.reasons == {"unsupported": 2}
    assert "job_seconds: a delta histogram (send cumulative)" in result.message


def test_exponential_histograms_are_refused_with_a_reason() -> None:
    def record(meter: Any) -> None:
        meter.create_histogram("size").record(10.0)
        meter.create_counter("ok").add(1)

    views = [View(instrument_name="size", aggregation=ExponentialBucketHistogramAggregation())]
    result = decode_otlp_metrics(_sdk_body(record, views=views), PB)
    assert [s.name for s in result.samples] == ["ok"]
    assert result.reasons == {"unsupported": 1}
    assert "exponential histogram" in result.message


def test_otlp_json_reads_as_the_protobuf_does() -> None:
    def record(meter: Any) -> None:
        meter.create_counter("http.requests").add(3, {"code": 500})
        meter.create_histogram("lat").record(3.0)

    body = _sdk_body(record)
    request = ExportMetricsServiceRequest.FromString(body)
    as_json = json_format.MessageToJson(request).encode()
    assert decode_otlp_metrics(as_json, JSON).samples == decode_otlp_metrics(body, PB).samples


def test_hand_written_otlp_json_with_its_spec_quirks() -> None:
    """int64 as strings, enums as ints, hex trace ids in exemplars, unknown fields."""
    doc = b"""{"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "mailer"}}]},
      "scopeMetrics": [{"scope": {"name": "x"}, "metrics": [
        {"name": "email.sent", "unit": "1", "futureField": true,
         "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
          {"timeUnixNano": "1764560123456789012", "asInt": "42",
           "attributes": [{"key": "ok", "value": {"boolValue": true}}],
           "exemplars": [{"timeUnixNano": "1764560123456789012", "asDouble": 1,
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}]}},
        {"name": "queue.depth", "gauge": {"dataPoints": [{"asDouble": 1001.5}]}}]}]}]}"""
    result = decode_otlp_metrics(doc, "application/json; charset=utf-8", now_ms=NOW_MS)
    assert result.samples == [
        Sample(
            "email_sent", 42.0, 1_764_560_123_456, {"service": "mailer", "ok": "true"}, "counter"
        ),
        Sample("queue_depth", 1001.5, NOW_MS, {"service": "mailer"}, "gauge"),  # time unset
    ]


def test_otlp_json_spellings_that_protobufs_json_mapping_allows() -> None:
    doc = {
        "resource_metrics": [  # original field names work as camelCase ones do
            {
                "scope_metrics": [
                    {
                        "metrics": [
                            {
                                "name": "a",
                                "sum": {
                                    "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {"asDouble": "NaN", "timeUnixNano": 5_000_000},
                                        {
                                            "asDouble": "2.5",
                                            "attributes": [
                                                {"key": "raw", "value": {"bytesValue": "AP8="}}
                                            ],
                                        },
                                        {"asInt": 7, "attributes": None, "flags": 0},
                                    ],
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    result = decode_otlp_metrics(orjson.dumps(doc), JSON, now_ms=NOW_MS)
    assert [(s.value, s.labels, s.kind) for s in result.samples] == [
        (2.5, {"raw": "AP8="}, "counter"),
        (7.0, {}, "counter"),
    ]
    assert result.reasons == {"non_finite": 1}


@pytest.mark.parametrize(
    "point",
    [
        {"asInt": "12abc"},
        {"asInt": 1.5},
        {"asInt": True},
        {"asInt": str(2**70)},
        {"asDouble": "fast"},
        {"asDouble": [1]},
        {"timeUnixNano": -1},
        {"attributes": {"key": "a"}},
        {"attributes": [{"key": "a", "value": {"bytesValue": 5}}]},
        {"attributes": [{"key": 5, "value": {}}]},
    ],
)
def test_otlp_json_values_of_the_wrong_type_are_intake_errors(point: dict[str, Any]) -> None:
    doc = {
        "resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": {"dataPoints": [point]}}]}]}]
    }
    with pytest.raises(IntakeError):
        decode_otlp_metrics(orjson.dumps(doc), JSON)


# --- hand-built protobuf for the edge cases -------------------------------------------------


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, AnyValue):
        return KeyValue(key=key, value=value)
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(resource: dict[str, Any] | None = None) -> tuple[ExportMetricsServiceRequest, Any]:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for key, value in (resource or {"service.name": "svc"}).items():
        rm.resource.attributes.append(_kv(key, value))
    return request, rm.scope_metrics.add()


def _gauge(scope: Any, name: str, value: float, attrs: dict[str, Any] | None = None) -> Any:
    point = scope.metrics.add(name=name).gauge.data_points.add(time_unix_nano=T_NS, as_double=value)
    for key, attr in (attrs or {}).items():
        point.attributes.append(_kv(key, attr))
    return point


def _decode(request: ExportMetricsServiceRequest, **kwargs: Any) -> DecodeResult:
    return decode_otlp_metrics(request.SerializeToString(), PB, now_ms=NOW_MS, **kwargs)


def test_attribute_names_and_values_become_valid_labels() -> None:
    request, scope = _request()
    nested = AnyValue()
    nested.array_value.values.add(string_value="a")
    nested.array_value.values.add(int_value=2)
    _gauge(
        scope,
        "1st.metric-name",
        1.0,
        {
            "http.route": "/x",
            "2xx": 1,
            "__secret": "s",
            "a.b": "one",
            "a_b": "two",
            "ratio": 0.5,
            "tags": nested,
            "empty": "",
        },
    )
    [sample] = _decode(request).samples
    assert sample.name == "_1st_metric_name"
    assert sample.labels == {
        "service": "svc",
        "http_route": "/x",
        "key_2xx": "1",
        "key__secret": "s",
        "a_b": "one;two",  # two keys that sanitise alike are joined, as Prometheus does
        "ratio": "0.5",
        "tags": '["a",2]',
    }


def test_bad_points_are_refused_one_by_one_and_counted() -> None:
    request, scope = _request()
    _gauge(scope, "ok", 1.0)
    _gauge(scope, "nan", math.nan)
    _gauge(scope, "inf", math.inf)
    _gauge(scope, "crowded", 1.0, {f"k{i}": "v" for i in range(MAX_LABELS + 1)})
    _gauge(scope, "nul", 1.0, {"a": "x\x00y"})
    _gauge(scope, "long", 1.0, {"a": "x" * 5000})
    _gauge(scope, "", 1.0)
    scope.metrics.add(name="novalue").gauge.data_points.add(time_unix_nano=T_NS)
    _gauge(scope, "gone", math.nan).flags = 1  # no recorded value: dropped, not an error
    result = _decode(request)
    assert [s.name for s in result.samples] == ["ok"]
    assert result.reasons == {
        "non_finite": 2,
        "too_many_labels": 1,
        "bad_label": 2,
        "bad_name": 1,
        "bad_point": 1,
    }
    assert result.rejected == 7 and result.dropped == 1
    assert result.message.startswith("7 refused: ")
    assert len(result.message) < 700


def test_a_resource_with_too_many_attributes_refuses_its_points() -> None:
    request, scope = _request({f"r.{i}": "v" for i in range(MAX_LABELS + 5)})
    _gauge(scope, "a", 1.0)
    _gauge(scope, "b", 1.0)
    result = _decode(request)
    assert result.samples == [] and result.reasons == {"too_many_labels": 2}


def test_histogram_and_summary_shapes_are_checked() -> None:
    request, scope = _request()
    hist = scope.metrics.add(name="h").histogram
    hist.aggregation_temporality = 2
    hist.data_points.add(time_unix_nano=T_NS, count=3, bucket_counts=[1, 2], explicit_bounds=[])
    hist.data_points.add(
        time_unix_nano=T_NS, count=3, bucket_counts=[1, 1, 1], explicit_bounds=[2.0, 1.0]
    )
    hist.data_points.add(time_unix_nano=T_NS, count=2, sum=math.inf)
    hist.data_points.add(time_unix_nano=T_NS, count=4, sum=8.0)  # no buckets: count and sum
    summary = scope.metrics.add(name="s").summary
    bad = summary.data_points.add(time_unix_nano=T_NS, count=1, sum=1.0)
    bad.quantile_values.add(quantile=1.5, value=1.0)
    good = summary.data_points.add(time_unix_nano=T_NS, count=10, sum=20.0)
    good.quantile_values.add(quantile=0.5, value=1.5)
    good.quantile_values.add(quantile=0.99, value=math.nan)  # empty window: dropped
    result = _decode(request)
    assert result.reasons == {"bad_point": 3, "non_finite": 1}
    assert result.dropped == 1
    assert [(s.name, s.value, s.labels.get("quantile"), s.kind) for s in result.samples] == [
        ("h_count", 4.0, None, "counter"),
        ("h_sum", 8.0, None, "counter"),
        ("s", 1.5, "0.5", "summary_quantile"),
        ("s_count", 10.0, None, "counter"),
        ("s_sum", 20.0, None, "counter"),
    ]


def test_non_monotonic_delta_sums_are_refused() -> None:
    request, scope = _request()
    total = scope.metrics.add(name="d").sum
    total.aggregation_temporality = 1
    total.data_points.add(time_unix_nano=T_NS, as_int=-3)
    result = _decode(request)
    assert result.samples == [] and result.reasons == {"unsupported": 1}


def test_samples_per_request_are_bounded() -> None:
    request, scope = _request()
    hist = scope.metrics.add(name="h").histogram
    hist.aggregation_temporality = 2
    for _ in range(3):
        hist.data_points.add(
            time_unix_nano=T_NS,
            count=101,
            sum=5.0,
            bucket_counts=[1] * 101,
            explicit_bounds=[float(b) for b in range(100)],
        )
    result = _decode(request, max_samples=250)
    assert len(result.samples) == 2 * 103
    assert result.reasons == {"too_many_samples": 1}


def test_undecodable_bodies_raise_intake_error() -> None:
    for body, content_type in [
        (b"\xff\xff\xff\xff", PB),
        (b"\x0a\x05abc", PB),  # a length past the end
        (b"not json", JSON),
        (b"[1, 2]", JSON),
        (b'{"resourceMetrics": 5}', JSON),
        (
            b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"dataPoints": '
            b'[{"asDouble": "abc"}]}}]}]}]}',
            JSON,
        ),
    ]:
        with pytest.raises(IntakeError) as error:
            decode_otlp_metrics(body, content_type)
        assert error.value.status == 400
    with pytest.raises(UnsupportedMediaType) as unsupported:
        decode_otlp_metrics(b"{}", "text/plain")
    assert unsupported.value.status == 415


def test_an_attribute_that_is_not_a_key_value_refuses_only_its_point() -> None:
    """The attribute lists are parsed lazily: a broken one must still be a refusal."""
    request, scope = _request()
    _gauge(scope, "ok", 1.0)
    good = request.SerializeToString()
    # A second resource, its one point with an attribute of undecodable bytes.
    bad_attr = b"\x3a\x02\xff\xff"  # NumberDataPoint.attributes (7), 2 bytes of garbage
    as_double = b"\x21" + b"\x00\x00\x00\x00\x00\x00\xf0\x3f"  # field 4, 1.0
    number_point = as_double + bad_attr
    gauge = b"\x0a" + bytes([len(number_point)]) + number_point
    metric = b"\x0a\x03bad" + b"\x2a" + bytes([len(gauge)]) + gauge
    scope_metrics = b"\x12" + bytes([len(metric)]) + metric
    resource_metrics = b"\x12" + bytes([len(scope_metrics)]) + scope_metrics
    body_bad = good + b"\x0a" + bytes([len(resource_metrics)]) + resource_metrics
    result = decode_otlp_metrics(body_bad, PB, now_ms=NOW_MS)
    assert [s.name for s in result.samples] == ["ok"]
    assert result.reasons == {"bad_label": 1}


def test_the_answer_bodies() -> None:
    assert response_content_type("application/x-protobuf") == PB
    assert response_content_type("garbage") == JSON
    ok = ExportMetricsServiceResponse.FromString(encode_otlp_response(0, "", PB))
    assert not ok.HasField("partial_success")
    partial = ExportMetricsServiceResponse.FromString(encode_otlp_response(2, "2 refused", PB))
    assert partial.partial_success.rejected_data_points == 2
    assert partial.partial_success.error_message == "2 refused"
    assert encode_otlp_response(0, "", JSON) == b"{}"
    parsed = json_format.Parse(encode_otlp_response(3, "x", JSON), ExportMetricsServiceResponse())
    assert parsed.partial_success.rejected_data_points == 3
    # google.rpc.Status, read with the real generated class (googleapis-common-protos).
    status = status_pb2.Status.FromString(encode_otlp_status("bad body", PB))
    assert (status.code, status.message) == (3, "bad body")
    assert encode_otlp_status("bad body", JSON) == b'{"code":3,"message":"bad body"}'


def _valid_body() -> bytes:
    request, scope = _request({"service.name": "svc", "host.name": "h"})
    _gauge(scope, "a.b", 1.0, {"x": "y"})
    hist = scope.metrics.add(name="h").histogram
    hist.aggregation_temporality = 2
    hist.data_points.add(time_unix_nano=T_NS, count=2, bucket_counts=[1, 1], explicit_bounds=[1])
    return request.SerializeToString()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hostile_bytes_never_escape_as_anything_but_intake_error(data: st.DataObject) -> None:
    body = _valid_body()
    if data.draw(st.booleans()):
        body = data.draw(st.binary(max_size=300))
    else:  # flip, cut or splice a valid body: deeper into the parser than random bytes get
        cut = data.draw(st.integers(0, len(body)))
        body = body[:cut] + data.draw(st.binary(max_size=8)) + body[cut + 1 :]
    try:
        result = decode_otlp_metrics(body, PB, now_ms=NOW_MS)
    except IntakeError:
        return
    for sample in result.samples:
        assert math.isfinite(sample.value)


_KEYS = st.sampled_from(
    [
        "resourceMetrics",
        "scopeMetrics",
        "metrics",
        "resource",
        "attributes",
        "key",
        "value",
        "stringValue",
        "arrayValue",
        "values",
        "name",
        "gauge",
        "sum",
        "histogram",
        "summary",
        "dataPoints",
        "asDouble",
        "asInt",
        "timeUnixNano",
        "bucketCounts",
        "explicitBounds",
        "quantileValues",
        "aggregationTemporality",
        "isMonotonic",
        "flags",
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _JSON, max_size=3))
def test_hostile_otlp_json_never_escapes_as_anything_but_intake_error(doc: Any) -> None:
    try:
        body = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return
    with contextlib.suppress(IntakeError):
        decode_otlp_metrics(body, JSON, now_ms=NOW_MS)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a value sits."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*prefix, i))
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_value_anywhere_in_valid_otlp_json_is_a_result_or_an_intake_error(
    data: st.DataObject,
) -> None:
    doc = json_format.MessageToDict(ExportMetricsServiceRequest.FromString(_valid_body()))
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(_JSON)
    try:
        body = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return
    with contextlib.suppress(IntakeError):
        decode_otlp_metrics(body, JSON, now_ms=NOW_MS)


def test_instance_falls_back_to_host_name_and_host_details_stay_out() -> None:
    request, scope = _request(
        {"service.name": "mailer", "host.name": "mx-1", "host.arch": "amd64", "k8s.pod.name": "p"}
    )
    _gauge(scope, "queue.depth", 3.0, {"service": "override"})
    [sample] = _decode(request).samples
    # A point's own attribute wins over the resource's.
    assert sample.labels == {"service": "override", "instance": "mx-1", "k8s_pod_name": "p"}
