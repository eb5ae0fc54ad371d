"""The intake checks a series' labels once, not at every sample: OTLP hands out one labels
dict per series across requests, and the tenant limits remember their verdict and
fingerprint per dict. Neither shortcut may change an answer: a data point under another
resource gets that resource's labels, and a new dict with the same labels is the same
series."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from services.ingest.intake import limits as limits_module
from services.ingest.intake.limits import SERIES_LIMIT, LimitSettings, TenantLimits
from services.ingest.intake.otlp import PROTOBUF, decode_otlp_metrics
from services.ingest.intake.result import TOO_MANY_LABELS
from shared.samples import Sample

TS = 1_764_560_000_000


def _body(service: str, instances: list[str]) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = service
    metric = rm.scope_metrics.add().metrics.add(name="up")
    for instance in instances:
        point = metric.gauge.data_points.add(time_unix_nano=TS * 1_000_000, as_double=1.0)
        point.attributes.add(key="pod").value.string_value = instance
    return request.SerializeToString()


def test_a_series_gets_the_same_labels_dict_at_every_export() -> None:
    first = decode_otlp_metrics(_body("web", ["a", "b"]), PROTOBUF).samples
    again = decode_otlp_metrics(_body("web", ["a", "b"]), PROTOBUF).samples
    assert [s.labels for s in first] == [
        {"service": "web", "pod": "a"},
        {"service": "web", "pod": "b"},
    ]
    assert all(x.labels is y.labels for x, y in zip(first, again, strict=True))


def test_the_same_point_attributes_under_another_resource_get_its_labels() -> None:
    for _ in range(2):  # and back again: no stale merge from the cache
        web = decode_otlp_metrics(_body("web", ["a"]), PROTOBUF).samples
        api = decode_otlp_metrics(_body("api", ["a"]), PROTOBUF).samples
        assert web[0].labels == {"service": "web", "pod": "a"}
        assert api[0].labels == {"service": "api", "pod": "a"}


def test_limits_count_a_series_once_whatever_dict_carries_its_labels() -> None:
    limits = TenantLimits(LimitSettings(max_series=1))
    first = limits.admit("acme", [Sample("m", 1.0, TS, {"a": "1"})])
    again = limits.admit("acme", [Sample("m", 2.0, TS, {"a": "1"})])  # a new, equal dict
    other = limits.admit("acme", [Sample("m", 3.0, TS, {"a": "2"})])
    assert len(first.samples) == len(again.samples) == 1
    assert other.samples == [] and other.reasons == {SERIES_LIMIT: 1}
    assert limits.series_count("acme") == 1


def test_limits_judge_each_labels_dict_by_its_content() -> None:
    limits = TenantLimits(LimitSettings(max_labels=2))
    for _ in range(2):  # the second time from what the limits remember
        admitted = limits.admit(
            "acme",
            [
                Sample("m", 1.0, TS, {"a": "1"}),
                Sample("m", 1.0, TS, {"a": "1", "b": "2", "c": "3"}),
            ],
        )
        assert len(admitted.samples) == 1 and admitted.reasons == {TOO_MANY_LABELS: 1}


def test_what_the_limits_remember_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "_MAX_KNOWN", 10)
    limits = TenantLimits(LimitSettings())
    for i in range(25):
        limits.admit("acme", [Sample("m", 1.0, TS, {"i": str(i)})])
        assert len(limits._known) <= 10
    assert limits.series_count("acme") == 25
