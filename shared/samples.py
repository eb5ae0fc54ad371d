"""The `metric.v2` event contract: typed, bounded metric samples from outside applications.

`metric.v1` (Belfry's own self-reports) carries one number per envelope. `metric.v2` is
what the metric intake (OTLP/HTTP, Prometheus remote_write, the plain JSON form) publishes:
one envelope per chunk of one request, its `data` a list of samples of that tenant::

    {"id": "<uuidv7>", "type": "metric.v2", "tenant": "acme",
     "occurred_at": "<RFC 3339, when ingest received it>", "received_at": "<same>",
     "data": {"samples": [
        {"name": "http_requests_total", "value": 1027.0, "ts": 1764560000000,
         "labels": {"service": "web", "code": "200"}, "kind": "counter"},
        {"name": "http_latency_seconds_bucket", "value": 7.0, "ts": 1764560000000,
         "labels": {"service": "web", "le": "0.25"}, "kind": "histogram_bucket"}]}}

Why a list per envelope and not an envelope per sample: at tens of thousands of samples a
second, an id, two timestamps and a contract check per sample would cost more than the
samples themselves; a request's samples share tenant and arrival time anyway.

A sample:

- `name`: a Prometheus metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`, at most `MAX_NAME_LEN`.
- `value`: a finite float. NaN and ±Inf are never stored: Prometheus staleness markers
  (a NaN) and OTLP points flagged "no recorded value" are end-of-series signals the
  decoders drop; a NaN quantile of an empty summary means "no data" and is dropped too;
  any other non-finite value is refused by the decoders with a reason. (JSON can't carry
  them either: it has no NaN, and msgspec would write `null`.)
- `ts`: epoch milliseconds (what remote_write sends and what the engine's windows need;
  OTLP nanoseconds are floored to ms), `0 <= ts <= MAX_TS_MS`.
- `labels`: label name -> value, names `[a-zA-Z_][a-zA-Z0-9_]*` and not starting with
  `__` (reserved, as in Prometheus: the name is `name`, never a `__name__` label),
  at most `MAX_LABELS` labels, names <= `MAX_LABEL_NAME_LEN`, values <= `MAX_LABEL_VALUE_LEN`
  without NUL (Postgres text can't hold one). These are the contract's ceilings; each
  tenant's limits (services/ingest/intake/limits.py) may be tighter.
- `kind`: what the number means, so the alerting engine knows how to aggregate it:

  * `gauge`: a value now (also: a remote_write series with no hint of its type).
  * `counter`: a cumulative, monotonic total (resets to 0 on restart); `rate` applies.
    The `_sum` and `_count` series of histograms and summaries are counters too.
  * `counter_delta`: an OTLP delta monotonic sum: the increase since the previous report.
    `rate` over a window is the sum of the deltas divided by the window.
  * `histogram_bucket`: a cumulative count of observations <= the `le` label (required;
    the last bucket is `le="+Inf"`), as Prometheus's classic histograms, so
    `histogram_quantile` works over the series of one name and label set.
  * `summary_quantile`: a client-computed quantile, the `quantile` label (required).

Kinds from OTLP are exact; from remote_write (which rarely carries metadata) they are
read from Prometheus naming conventions (`_total`, `_bucket` + `le`, `_sum`, `_count`,
a `quantile` label): a hint, not a gate: a rule may still `rate` a gauge.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import datetime
from math import isfinite
from typing import Annotated, Any, Literal

import msgspec
import orjson

METRIC_V2 = "metric.v2"

MAX_NAME_LEN = 256
MAX_LABELS = 64
MAX_LABEL_NAME_LEN = 128
MAX_LABEL_VALUE_LEN = 2048
MAX_SAMPLES_PER_EVENT = 5000
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, as far as datetime goes

Kind = Literal["gauge", "counter", "counter_delta", "histogram_bucket", "summary_quantile"]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

# `\Z`, not `$`: `$` also matches before a trailing newline.
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*\Z"
LABEL_NAME_PATTERN = r"^(?!__)[a-zA-Z_][a-zA-Z0-9_]*\Z"
LABEL_VALUE_PATTERN = r"^[^\x00]*\Z"
_METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
_LABEL_NAME = re.compile(LABEL_NAME_PATTERN)

MetricName = Annotated[str, msgspec.Meta(pattern=METRIC_NAME_PATTERN, max_length=MAX_NAME_LEN)]
LabelName = Annotated[str, msgspec.Meta(pattern=LABEL_NAME_PATTERN, max_length=MAX_LABEL_NAME_LEN)]
LabelValue = Annotated[
    str, msgspec.Meta(pattern=LABEL_VALUE_PATTERN, max_length=MAX_LABEL_VALUE_LEN)
]
Labels = Annotated[dict[LabelName, LabelValue], msgspec.Meta(max_length=MAX_LABELS)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=MAX_TS_MS)]


class SampleContractError(ValueError):
    """A `metric.v2` body or sample does not match the contract; the message says where."""


class Sample(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One sample. Direct construction checks only the cheap invariants below (decoders
    build valid names and labels themselves); decoding from JSON checks everything."""

    name: MetricName
    value: float
    ts: Millis
    labels: Labels = {}
    kind: Kind = "gauge"

    def __post_init__(self) -> None:
        if not isfinite(self.value):
            raise ValueError("value must be a finite number")
        if self.kind == "histogram_bucket" and "le" not in self.labels:
            raise ValueError("a histogram_bucket sample needs an `le` label")
        if self.kind == "summary_quantile" and "quantile" not in self.labels:
            raise ValueError("a summary_quantile sample needs a `quantile` label")


class MetricData(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """The `data` of a `metric.v2` envelope."""

    samples: Annotated[list[Sample], msgspec.Meta(min_length=1, max_length=MAX_SAMPLES_PER_EVENT)]


_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
_TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}\Z"


class MetricEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A whole `metric.v2` envelope, for consumers that decode a batch in one call."""

    id: Annotated[str, msgspec.Meta(pattern=_ID_PATTERN)]
    type: Literal["metric.v2"]
    tenant: Annotated[str, msgspec.Meta(pattern=_TENANT_PATTERN)]
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    received_at: Annotated[datetime, msgspec.Meta(tz=True)]
    data: MetricData
    trace: dict[str, str] = {}


_samples_encoder = msgspec.json.Encoder()
_batch_decoder = msgspec.json.Decoder(list[MetricEnvelope])


# --- the consumer's fast path ----------------------------------------------------------
# msgspec checks a `pattern` by calling Python's `re` on every string: three or four
# calls a sample, most of a strict decode's cost. The wire types below are the same
# contract minus the patterns; `SampleBatchDecoder` checks those once per distinct
# metric name and label object (a series sends the same bytes every time).


class _WireSample(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    name: Annotated[str, msgspec.Meta(max_length=MAX_NAME_LEN)]
    value: float
    ts: Millis
    labels: msgspec.Raw = msgspec.Raw(b"{}")  # checked by SampleBatchDecoder
    kind: Kind = "gauge"


class _WireData(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    samples: Annotated[
        list[_WireSample], msgspec.Meta(min_length=1, max_length=MAX_SAMPLES_PER_EVENT)
    ]


class _WireEnvelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    id: Annotated[str, msgspec.Meta(pattern=_ID_PATTERN)]
    type: Literal["metric.v2"]
    tenant: Annotated[str, msgspec.Meta(pattern=_TENANT_PATTERN)]
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    received_at: Annotated[datetime, msgspec.Meta(tz=True)]
    data: _WireData
    trace: dict[str, str] = {}


_wire_decoder = msgspec.json.Decoder(list[_WireEnvelope])
_labels_decoder = msgspec.json.Decoder(Labels)

# (name, labels, ts in epoch ms, value, kind): what the alerting windows take.
SampleTuple = tuple[str, dict[str, str], int, float, str]


class SampleBatchDecoder:
    """`decode_metric_v2_batch` for a consumer's hot path: the same checks (anything the
    strict decoder refuses raises SampleContractError here too), at a fraction of the
    cost, returning per envelope (tenant, samples as tuples). Label dicts are shared
    between the samples of a series and must not be mutated. Its caches are bounded."""

    def __init__(self, max_cached: int = 200_000) -> None:
        self.max_cached = max_cached
        self._names: set[str] = set()
        self._labels: dict[bytes, dict[str, str]] = {}

    def decode(self, body: bytes) -> list[tuple[str, list[SampleTuple]]]:
        try:
            envelopes = _wire_decoder.decode(body)
            return [(e.tenant, self._samples(e.data.samples)) for e in envelopes]
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SampleContractError(_where(str(exc))) from None

    def _samples(self, wire: list[_WireSample]) -> list[SampleTuple]:
        names, cached = self._names, self._labels
        out: list[SampleTuple] = []
        append = out.append
        for s in wire:
            name, kind = s.name, s.kind
            if name not in names:
                self._check_name(name)
            raw = bytes(s.labels)
            labels = cached.get(raw)
            if labels is None:
                labels = self._check_labels(raw)
            if not isfinite(s.value):
                raise SampleContractError("value must be a finite number")
            if kind != "gauge" and kind != "counter":  # the usual kinds need no check
                _kind_labels(kind, labels)
            append((name, labels, s.ts, s.value, kind))
        return out

    def _check_name(self, name: str) -> None:
        if _METRIC_NAME.match(name) is None:
            raise SampleContractError(f"Expected `str` matching {METRIC_NAME_PATTERN!r}")
        if len(self._names) >= self.max_cached:
            self._names.clear()
        self._names.add(name)

    def _check_labels(self, raw: bytes) -> dict[str, str]:
        labels = _labels_decoder.decode(raw)  # the strict type: every pattern and bound
        if len(self._labels) >= self.max_cached:
            self._labels.clear()
        self._labels[raw] = labels
        return labels


def _kind_labels(kind: str, labels: dict[str, str]) -> None:
    if kind == "histogram_bucket" and "le" not in labels:
        raise SampleContractError("a histogram_bucket sample needs an `le` label")
    if kind == "summary_quantile" and "quantile" not in labels:
        raise SampleContractError("a summary_quantile sample needs a `quantile` label")


def valid_metric_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LEN and _METRIC_NAME.match(name) is not None


def valid_label_name(name: str) -> bool:
    return len(name) <= MAX_LABEL_NAME_LEN and _LABEL_NAME.match(name) is not None


def metric_v2_data(samples: list[Sample]) -> dict[str, Any]:
    """The `data` of a `metric.v2` envelope (for `shared.contracts.make_envelope`), the
    samples already encoded by msgspec: orjson writes the fragment as is, so the
    publisher's `encode_batch` costs nothing per sample. At most MAX_SAMPLES_PER_EVENT."""
    if not 0 < len(samples) <= MAX_SAMPLES_PER_EVENT:
        raise SampleContractError(f"an event holds 1..{MAX_SAMPLES_PER_EVENT} samples")
    return {"samples": orjson.Fragment(_samples_encoder.encode(samples))}


def chunks(samples: list[Sample], size: int = MAX_SAMPLES_PER_EVENT) -> list[list[Sample]]:
    """A request's samples cut into event-sized lists."""
    return [samples[i : i + size] for i in range(0, len(samples), size)]


def metric_v2_datas(samples: list[Sample], max_bytes: int) -> list[dict[str, Any]]:
    """`metric_v2_data` for a whole request, in order: chunks of up to
    MAX_SAMPLES_PER_EVENT samples, halved until each encodes to at most `max_bytes` (long
    labels repeat in every sample of a series, so a count alone doesn't bound the size;
    a single sample is never split)."""
    out = []
    pending = deque(chunks(samples))
    while pending:
        chunk = pending.popleft()
        encoded = _samples_encoder.encode(chunk)
        if len(encoded) > max_bytes and len(chunk) > 1:
            half = len(chunk) // 2
            pending.extendleft([chunk[half:], chunk[:half]])  # the first half goes first
            continue
        out.append({"samples": orjson.Fragment(encoded)})
    return out


def validate_metric_v2(data: Any) -> MetricData:
    """Check the `data` of one `metric.v2` envelope (a dict, as `decode_batch` gives it):
    the hook for `shared.contracts.validate_envelope`. Raises SampleContractError."""
    try:
        return msgspec.convert(data, MetricData)
    except msgspec.ValidationError as exc:
        raise SampleContractError(_where(str(exc))) from None


def decode_metric_v2_batch(body: bytes) -> list[MetricEnvelope]:
    """A `batch.v1` body made only of valid `metric.v2` envelopes, in one C-speed pass.
    Raises SampleContractError on the first problem: a consumer then falls back to
    `shared.contracts.decode_batch` and checks envelope by envelope, so one bad event is
    dead-lettered alone."""
    try:
        return _batch_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SampleContractError(_where(str(exc))) from None


def _where(message: str) -> str:
    """msgspec says `... - at `$.samples[3].name``; data paths read better as `data.`."""
    return message.replace("`$.", "`data.").replace("`$`", "`data`")[:300]
