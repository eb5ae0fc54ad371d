"""OpenTelemetry tracing, configured only by the standard `OTEL_*` variables.

`build_tracer_provider` returns None — no provider, no exporter, no cost — when
`OTEL_SDK_DISABLED=true` or no OTLP endpoint is configured. Otherwise spans go through a
batch processor to an OTLP exporter (`http/protobuf` by default, `grpc` when
`OTEL_EXPORTER_OTLP_PROTOCOL` says so); the sampler comes from `OTEL_TRACES_SAMPLER` /
`OTEL_TRACES_SAMPLER_ARG` and extra resource attributes from `OTEL_RESOURCE_ATTRIBUTES`,
all read by the SDK itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from shared.settings import SettingsError

INSTRUMENTATION = "belfry"


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        return Http()
    raise SettingsError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf, got {protocol!r}"
    )


def tracing_configured(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def build_tracer_provider(
    service: str, version: str, environment: str, environ: Mapping[str, str]
) -> TracerProvider | None:
    """A provider exporting over OTLP, or None when tracing is off (see module doc)."""
    if not tracing_configured(environ):
        return None
    ours = Resource(
        {
            "service.name": f"belfry-{service}",
            "service.namespace": "belfry",
            "service.version": version,
            "deployment.environment.name": environment,
            "deployment.environment": environment,
        }
    )
    # OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME override ours, as operators expect.
    from_env = OTELResourceDetector().detect()
    resource = Resource.create(dict(ours.merge(from_env).attributes))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    return provider


def tracer_for(provider: trace.TracerProvider | None) -> trace.Tracer | None:
    """The tracer code should use, or None when tracing is off (callers skip span work)."""
    if provider is None:
        return None
    return provider.get_tracer(INSTRUMENTATION)
