"""Prometheus remote_write 1.0 (snappy block format around a protobuf `WriteRequest`) ->
`metric.v2` samples.

The body is checked before anything large is allocated: the snappy block format starts
with the uncompressed length (a varint), read without decompressing; over
`MAX_UNCOMPRESSED` the body is refused (BodyTooLarge) before a byte is inflated. The
protobuf is parsed by upb (services/ingest/intake/protos.py).

Each series: the `__name__` label is the sample's name, the other labels its labels
(Prometheus names already: checked, never rewritten; an empty value means no label, as
in Prometheus). Kind, from the request's metadata when it names the family (Prometheus
sends metadata in requests of their own, so usually from the name alone):

- `<x>_bucket` with an `le` label -> `histogram_bucket`;
- a `quantile` label -> `summary_quantile`;
- `<x>_total`, `<x>_sum`, `<x>_count` -> `counter` (the names Prometheus reserves for
  counters and for histogram and summary totals);
- metadata type counter -> `counter`; anything else -> `gauge`.

Values: a staleness marker (the NaN with bits 0x7ff0000000000002, sent when a series
disappears) and the NaN of an empty summary's quantile are dropped, not errors; any other
non-finite value is refused. A series with a bad name or label is refused whole (all its
samples); so are native histograms (not supported: use classic histograms).
"""

from __future__ import annotations

import struct
from math import isfinite
from typing import Any

import cramjam
from google.protobuf.message import DecodeError

from services.ingest.intake.cache import LabelCache
from services.ingest.intake.names import label_name_ok, label_value_problem, metric_name_ok
from services.ingest.intake.protos import METRIC_TYPES, Label, WriteRequest
from services.ingest.intake.result import (
    BAD_LABEL,
    BAD_NAME,
    BAD_TIMESTAMP,
    NON_FINITE,
    TOO_MANY_LABELS,
    TOO_MANY_SAMPLES,
    UNSUPPORTED,
    BodyTooLarge,
    DecodeResult,
    IntakeError,
)
from shared.samples import MAX_LABELS, MAX_TS_MS, Kind, Sample

# Prometheus sends at most `max_samples_per_send` (2,000 by default) samples a request,
# a few hundred kB uncompressed; 32 MiB leaves room for big labels and big senders.
MAX_UNCOMPRESSED = 32 * 1024 * 1024
MAX_SAMPLES = 200_000
STALE_NAN_BITS = 0x7FF0000000000002
_STALE_NAN = struct.pack("<Q", STALE_NAN_BITS)
_COUNTER_SUFFIXES = ("_total", "_sum", "_count")


class _Refused(Exception):
    """A series can't be taken: args = (reason code, what is wrong)."""


# Raw label list -> (name, labels) or _Refused: a series is read once, not at every scrape.
_Series = tuple[str, dict[str, str], Kind | None]  # name, labels, kind from the name
_series_cache: LabelCache[_Series | _Refused] = LabelCache()


def decode_remote_write(
    body: bytes, *, max_uncompressed: int = MAX_UNCOMPRESSED, max_samples: int = MAX_SAMPLES
) -> DecodeResult:
    """Samples from a remote_write body. Raises IntakeError (undecodable: 400) or
    BodyTooLarge (413)."""
    request = parse_request(body, max_uncompressed)
    families = {m.metric_family_name: METRIC_TYPES.get(m.type, "unknown") for m in request.metadata}
    out = DecodeResult()
    for series in request.timeseries:
        samples = series.samples  # each access builds a container: once per series
        count = len(samples)
        histograms = len(series.histograms)
        if histograms:
            out.reject(UNSUPPORTED, "native histograms (send classic ones)", histograms)
        if not count:
            continue
        if len(out.samples) + count > max_samples:
            out.reject(TOO_MANY_SAMPLES, f"more than {max_samples} samples in one request", count)
            continue
        named = _cached_series(series.labels)
        if isinstance(named, _Refused):
            reason, detail = named.args
            out.reject(reason, detail, count)
            continue
        name, labels, kind = named
        if kind is None:  # only the request's metadata can tell
            kind = "counter" if families.get(name) == "counter" else "gauge"
        _samples(out, name, labels, kind, samples)
    return out


def parse_request(body: bytes, max_uncompressed: int = MAX_UNCOMPRESSED) -> Any:
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise IntakeError(f"body is not snappy-compressed (block format): {exc}") from None
    if size > max_uncompressed:
        raise BodyTooLarge(f"uncompressed body of {size} bytes is over {max_uncompressed}")
    try:
        raw = cramjam.snappy.decompress_raw(body)
    except cramjam.DecompressionError as exc:
        raise IntakeError(f"body is not valid snappy (block format): {exc}") from None
    try:
        return WriteRequest.FromString(memoryview(raw))
    except DecodeError as exc:
        raise IntakeError(f"body is not a Prometheus WriteRequest: {exc}") from None


def _cached_series(raw: Any) -> _Series | _Refused:
    if len(raw) > MAX_LABELS + 1:  # before hashing a tuple of 10,000 labels
        return _Refused(TOO_MANY_LABELS, f"a series with {len(raw)} labels (at most {MAX_LABELS})")
    key = tuple(raw)
    named = _series_cache.get(key)
    if named is None:
        try:
            named = _series_labels(key)
        except _Refused as refused:
            named = refused
        _series_cache.put(key, named)
    return named


def _series_labels(raw: tuple[bytes, ...]) -> _Series:
    """(name, labels, kind) of a series' raw labels; raises _Refused. The dict is shared by
    every sample of the series (and of later requests): never mutate it."""
    name = None
    out: dict[str, str] = {}
    for item in raw:
        try:
            label = Label.FromString(item)
        except DecodeError:
            raise _Refused(BAD_LABEL, "a label that is not a valid Label (or not UTF-8)") from None
        key, value = label.name, label.value
        if key == "__name__":
            name = value
            continue
        if not label_name_ok(key):
            raise _Refused(BAD_LABEL, f"label name {key[:60]!r}")
        problem = label_value_problem(value)
        if problem:
            raise _Refused(BAD_LABEL, f"label {key[:60]!r}: {problem}")
        if key in out:
            raise _Refused(BAD_LABEL, f"label {key[:60]!r} given twice")
        if value:
            out[key] = value
    if name is None:
        raise _Refused(BAD_NAME, "a series without __name__")
    if not metric_name_ok(name):
        raise _Refused(BAD_NAME, f"metric name {name[:60]!r}")
    return name, out, _kind(name, out)


def _kind(name: str, labels: dict[str, str]) -> Kind | None:
    """The kind the name and labels tell; None: ask the metadata."""
    if "le" in labels and name.endswith("_bucket"):
        return "histogram_bucket"
    if "quantile" in labels:
        return "summary_quantile"
    if name.endswith(_COUNTER_SUFFIXES):
        return "counter"
    return None


def _samples(
    out: DecodeResult, name: str, labels: dict[str, str], kind: Kind, samples: Any
) -> None:
    # One labels dict shared by the series' samples: nothing mutates a sample's labels.
    add = out.samples.append
    for sample in samples:
        value, ts = sample.value, sample.timestamp
        if not isfinite(value):
            if value != value and (
                kind == "summary_quantile" or struct.pack("<d", value) == _STALE_NAN
            ):
                out.dropped += 1
            else:
                out.reject(NON_FINITE, f"{name}: value {value}")
            continue
        if not 0 <= ts <= MAX_TS_MS:
            out.reject(BAD_TIMESTAMP, f"{name}: timestamp {ts}")
            continue
        add(Sample(name, value, ts, labels, kind))
