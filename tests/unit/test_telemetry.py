"""Tracing is configured by OTEL_* variables only, and costs nothing when off."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError
from shared.telemetry import build_tracer_provider, tracer_for

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
