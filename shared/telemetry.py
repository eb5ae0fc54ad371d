"""OpenTelemetry tracing, configured only by the standard `OTEL_*` variables.

`build_tracer_provider` returns None — no provider, no exporter, no cost — when
`OTEL_SDK_DISABLED=true` or no OTLP endpoint is configured. Otherwise spans go through a
batch processor to an OTLP exporter (`http/protobuf` by default, `grpc` when
`OTEL_EXPORTER_OTLP_PROTOCOL` says so); the sampler comes from `OTEL_TRACES_SAMPLER` /
`OTEL_TRACES_SAMPLER_ARG` and extra resource attributes from `OTEL_RESOURCE_ATTRIBUTES`,
all read by the SDK itself.

`RootSampling` decides a root span's sampling before any span object exists: with a
trace-id-ratio sampler (the usual `parentbased_traceidratio`), 99 % of requests at 1 %
then cost one random draw instead of the SDK's ~7 µs of span bookkeeping, with the same
decision the sampler would make on the same trace id.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

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
    provider = TracerProvider(resource=resource, id_generator=PresetIdGenerator())
    provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    return provider


def tracer_for(provider: trace.TracerProvider | None) -> trace.Tracer | None:
    """The tracer code should use, or None when tracing is off (callers skip span work)."""
    if provider is None:
        return None
    return provider.get_tracer(INSTRUMENTATION)


class PresetIdGenerator(IdGenerator):
    """Random ids, except that the next trace id can be chosen beforehand (RootSampling
    draws it to decide; the span it then starts must carry that same id). Only read on
    the event loop's thread, right after being set, so nothing can take it in between."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self.next_trace_id: int | None = None

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        preset, self.next_trace_id = self.next_trace_id, None
        return preset if preset is not None else self._random.generate_trace_id()


def _root_ratio(sampler: Sampler) -> TraceIdRatioBased | None:
    if isinstance(sampler, ParentBased):
        sampler = sampler._root  # what decides when there is no parent
    return sampler if isinstance(sampler, TraceIdRatioBased) else None


class RootSampling:
    """Starts root spans, deciding first with the sampler's own rule on a drawn trace id."""

    def __init__(
        self,
        tracer: Tracer,
        ratio: TraceIdRatioBased,
        ids: PresetIdGenerator,
        bits: Callable[[int], int] = random.getrandbits,
    ):
        self.tracer = tracer
        self.bound = ratio.bound
        self.ids = ids
        self.bits = bits  # random bits (tests draw chosen trace ids)

    @classmethod
    def of(cls, tracer: trace.Tracer | None) -> RootSampling | None:
        """For an SDK tracer with a (parent-based) trace-id-ratio sampler, else None."""
        if not isinstance(tracer, Tracer) or not isinstance(tracer.id_generator, PresetIdGenerator):
            return None
        ratio = _root_ratio(tracer.sampler)
        return None if ratio is None else cls(tracer, ratio, tracer.id_generator)

    def start_root_span(self, name: str, kind: trace.SpanKind) -> trace.Span | None:
        """A span without a parent, or None when it would not be sampled."""
        # The ratio sampler decides on the trace id's low 64 bits: draw those first, and
        # the high ones only for the few that are sampled (one call per request, not two).
        low = self.bits(64)
        if low >= self.bound:
            return None
        self.ids.next_trace_id = (self.bits(64) << 64 | low) or 1 << 64
        return self.tracer.start_span(name, trace.set_span_in_context(trace.INVALID_SPAN), kind)
