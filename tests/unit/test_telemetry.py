"""Tracing is configured by OTEL_* variables only, and costs nothing when off."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from shared.settings import SettingsError
from shared.telemetry import PresetIdGenerator, RootSampling, build_tracer_provider, tracer_for

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def test_no_endpoint_means_no_provider_and_no_tracer() -> None:
    assert build_tracer_provider("ingest", "1", "dev", {}) is None
    assert tracer_for(None) is None


@pytest.mark.parametrize("extra", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_disabled_sdk_means_no_provider(extra: dict[str, str]) -> None:
    assert build_tracer_provider("ingest", "1", "dev", {**ENDPOINT, **extra}) is None


def test_provider_carries_service_resource() -> None:
    provider = build_tracer_provider("writer", "1.2.3", "staging", ENDPOINT)
    assert provider is not None
    try:
        attrs = provider.resource.attributes
        assert attrs["service.name"] == "belfry-writer"
        assert attrs["service.version"] == "1.2.3"
        assert attrs["deployment.environment.name"] == "staging"
        assert tracer_for(provider) is not None
    finally:
        provider.shutdown()


def test_unknown_protocol_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        build_tracer_provider(
            "ingest", "1", "dev", {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}
        )


class _Ids(IdGenerator):
    """Trace ids from a list, to show RootSampling decides on the id the span then gets."""

    def __init__(self, trace_ids: list[int]) -> None:
        self.trace_ids = trace_ids

    def generate_trace_id(self) -> int:
        return self.trace_ids.pop(0)

    def generate_span_id(self) -> int:
        return 7


def _roots(sampler: Sampler, trace_ids: list[int]) -> RootSampling:
    """RootSampling drawing `trace_ids`: the low 64 bits of each, then, when it asks (a
    sampled one), its high 64 bits."""
    ids = PresetIdGenerator()
    ids._random = _Ids(list(trace_ids))  # type: ignore[assignment]
    provider = TracerProvider(sampler=sampler, id_generator=ids)
    roots = RootSampling.of(provider.get_tracer("t"))
    assert roots is not None
    high: list[int] = []

    def bits(n: int) -> int:
        assert n == 64
        if high:
            return high.pop()
        trace_id = trace_ids.pop(0)
        if trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < roots.bound:
            high.append(trace_id >> 64)
        return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT

    roots.bits = bits
    return roots


def test_root_sampling_decides_like_the_ratio_sampler_on_the_same_trace_id() -> None:
    ratio = TraceIdRatioBased(0.25)
    high = 0xABCD << 64  # the ratio sampler reads only the low 64 bits
    drawn = [high | (ratio.bound - 1), high | ratio.bound, high | 0, (1 << 64) - 1]
    roots = _roots(ParentBased(ratio), list(drawn))
    spans = [roots.start_root_span("GET /x", SpanKind.SERVER) for _ in drawn]
    sampled = [span.get_span_context().trace_id if span else None for span in spans]
    expected = [
        t if ratio.should_sample(None, t, "GET /x").decision.is_sampled() else None for t in drawn
    ]
    assert sampled == expected == [drawn[0], None, drawn[2], None]
    assert all(span is None or span.is_recording() for span in spans)


def test_root_sampling_only_for_ratio_samplers_of_our_providers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert RootSampling.of(None) is None
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), id_generator=PresetIdGenerator())
    assert RootSampling.of(provider.get_tracer("t")) is None
    assert RootSampling.of(TracerProvider(sampler=TraceIdRatioBased(0.5)).get_tracer("t")) is None
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")  # the SDK reads it
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    built = build_tracer_provider("ingest", "1", "dev", ENDPOINT)
    assert built is not None
    try:
        assert RootSampling.of(tracer_for(built)) is not None
    finally:
        built.shutdown()
