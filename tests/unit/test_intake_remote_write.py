"""Prometheus remote_write bodies -> samples, and every way a body can be hostile:
corrupt snappy, corrupt protobuf, a size bomb, 10k labels, NaN, invalid UTF-8."""

from __future__ import annotations

import math
import struct
from typing import Any

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.intake.protos import Label, WriteRequest
from services.ingest.intake.remote_write import STALE_NAN_BITS, decode_remote_write
from services.ingest.intake.result import BodyTooLarge, DecodeResult, IntakeError
from shared.samples import MAX_LABELS

TS = 1_764_560_000_000
STALE = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

Series = tuple[dict[str, str], list[tuple[float, int]]]


def _label(name: str, value: str) -> bytes:
    data: bytes = Label(name=name, value=value).SerializeToString()
    return data


def _request(series: list[Series], metadata: list[tuple[int, str]] = ()) -> Any:  # type: ignore[assignment]
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        ts.labels.extend(_label(k, v) for k, v in labels.items())
        for value, at in samples:
            ts.samples.add(value=value, timestamp=at)
    for kind, family in metadata:
        request.metadata.add(type=kind, metric_family_name=family)
    return request


def _body(request: Any) -> bytes:
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _decode(series: list[Series], **kwargs: Any) -> DecodeResult:
    return decode_remote_write(_body(_request(series, **kwargs)))


def _kinds(result: DecodeResult) -> list[tuple[str, str]]:
    return [(s.name, s.kind) for s in result.samples]


def test_series_become_samples_with_kinds_read_from_prometheus_names() -> None:
    job = {"job": "api", "instance": "10.0.0.7:9100"}
    result = _decode(
        [
            (
                {"__name__": "http_requests_total", **job, "code": "500"},
                [(10, TS), (12, TS + 15_000)],
            ),
            ({"__name__": "queue_depth", **job}, [(1200, TS)]),
            ({"__name__": "latency_seconds_bucket", **job, "le": "0.5"}, [(7, TS)]),
            ({"__name__": "latency_seconds_bucket", **job, "le": "+Inf"}, [(9, TS)]),
            ({"__name__": "latency_seconds_sum", **job}, [(3.5, TS)]),
            ({"__name__": "latency_seconds_count", **job}, [(9, TS)]),
            ({"__name__": "rpc_seconds", **job, "quantile": "0.99"}, [(0.2, TS)]),
            ({"__name__": "jobs_done", **job}, [(3, TS)]),  # a counter by metadata only
        ],
        metadata=[(1, "jobs_done")],
    )
    assert (result.rejected, result.dropped) == (0, 0)
    assert _kinds(result) == [
        ("http_requests_total", "counter"),
        ("http_requests_total", "counter"),
        ("queue_depth", "gauge"),
        ("latency_seconds_bucket", "histogram_bucket"),
        ("latency_seconds_bucket", "histogram_bucket"),
        ("latency_seconds_sum", "counter"),
        ("latency_seconds_count", "counter"),
        ("rpc_seconds", "summary_quantile"),
        ("jobs_done", "counter"),
    ]
    first, second = result.samples[:2]
    assert first.labels == {**job, "code": "500"}  # no __name__ among the labels
    assert (first.value, first.ts, second.value, second.ts) == (10.0, TS, 12.0, TS + 15_000)


def test_empty_label_values_mean_no_label() -> None:
    result = _decode([({"__name__": "up", "job": "x", "env": ""}, [(1, TS)])])
    assert result.samples[0].labels == {"job": "x"}


def test_staleness_markers_and_nan_quantiles_are_dropped_other_non_finite_refused() -> None:
    result = _decode(
        [
            ({"__name__": "up", "job": "x"}, [(1, TS), (STALE, TS + 1)]),
            ({"__name__": "rpc", "quantile": "0.5"}, [(math.nan, TS)]),
            ({"__name__": "temp"}, [(math.nan, TS), (math.inf, TS), (-math.inf, TS), (2, TS)]),
        ]
    )
    assert [(s.name, s.value) for s in result.samples] == [("up", 1.0), ("temp", 2.0)]
    assert result.dropped == 2
    assert result.reasons == {"non_finite": 3}


def test_bad_series_are_refused_whole_and_the_rest_kept() -> None:
    ok: Series = ({"__name__": "ok"}, [(1, TS)])
    refused: list[Series] = [
        ({"job": "no name"}, [(1, TS), (2, TS)]),
        ({"__name__": "1bad"}, [(1, TS)]),
        ({"__name__": "a", "bad-label": "x"}, [(1, TS)]),
        ({"__name__": "a", "__meta_x": "x"}, [(1, TS)]),
        ({"__name__": "a", "v": "x\x00"}, [(1, TS)]),
        ({"__name__": "a", "v": "x" * 5000}, [(1, TS)]),
        ({"__name__": "a", **{f"l{i}": "v" for i in range(MAX_LABELS + 1)}}, [(1, TS)]),
    ]
    result = _decode([ok, *refused, ok])
    assert [s.name for s in result.samples] == ["ok", "ok"]
    assert result.reasons == {"bad_name": 3, "bad_label": 4, "too_many_labels": 1}
    assert result.rejected == 8
    assert "a series without __name__" in result.message


def test_ten_thousand_labels_are_refused_without_reading_them() -> None:
    request = _request([({"__name__": "ok"}, [(1, TS)])])
    crowded = request.timeseries.add()
    crowded.labels.extend(_label(f"l{i}", "v") for i in range(10_000))
    crowded.samples.add(value=1, timestamp=TS)
    result = decode_remote_write(_body(request))
    assert [s.name for s in result.samples] == ["ok"]
    assert result.reasons == {"too_many_labels": 1}
    assert "10000 labels" in result.message


def test_duplicate_labels_and_invalid_utf8_refuse_the_series() -> None:
    request = _request([])
    twice = request.timeseries.add()
    twice.labels.extend([_label("__name__", "a"), _label("x", "1"), _label("x", "2")])
    twice.samples.add(value=1, timestamp=TS)
    not_utf8 = request.timeseries.add()
    # Label{name="__name__", value=0xff 0xfe}: a proto3 string must be UTF-8.
    not_utf8.labels.extend([b"\x0a\x08__name__\x12\x02\xff\xfe"])
    not_utf8.samples.add(value=1, timestamp=TS)
    result = decode_remote_write(_body(request))
    assert result.samples == [] and result.reasons == {"bad_label": 2}


def test_native_histograms_and_bad_timestamps_are_refused() -> None:
    request = _request([({"__name__": "a"}, [(1, -5), (2, TS)])])
    request.timeseries[0].histograms.append(b"\x08\x01")  # opaque: counted, not parsed
    result = decode_remote_write(_body(request))
    assert [s.value for s in result.samples] == [2.0]
    assert result.reasons == {"unsupported": 1, "bad_timestamp": 1}


def test_a_series_seen_again_reads_the_same() -> None:
    """Series are cached by their raw labels: a second request must read identically,
    refusals included."""
    series: list[Series] = [({"__name__": "up", "job": "x"}, [(1, TS)]), ({"job": "y"}, [(1, TS)])]
    first, second = _decode(series), _decode(series)
    assert first.samples == second.samples and first.reasons == second.reasons == {"bad_name": 1}


def test_samples_per_request_are_bounded() -> None:
    series: list[Series] = [({"__name__": "a", "i": str(i)}, [(1, TS)] * 10) for i in range(5)]
    result = decode_remote_write(_body(_request(series)), max_samples=25)
    assert len(result.samples) == 20 and result.reasons == {"too_many_samples": 30}


def test_corrupt_snappy_and_corrupt_protobuf_are_intake_errors() -> None:
    good = _body(_request([({"__name__": "up"}, [(1, TS)])]))
    for body in [
        b"",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # a varint that never ends
        good[:-3],  # truncated
        b"\x10" + good[1:],  # says 16 bytes, holds another count
        bytes(cramjam.snappy.compress(b"framed, not block format")),
        _request([({"__name__": "up"}, [(1, TS)])]).SerializeToString(),  # not compressed
        bytes(cramjam.snappy.compress_raw(b"\x0a\x05abc")),  # protobuf: length past the end
        bytes(cramjam.snappy.compress_raw(b"\xff" * 20)),
    ]:
        with pytest.raises(IntakeError) as error:
            decode_remote_write(body)
        assert error.value.status == 400, body[:20]


def test_a_size_bomb_is_refused_before_decompressing() -> None:
    # 5 bytes claiming 4 GiB of output: the claim alone is refused (413), nothing inflated.
    with pytest.raises(BodyTooLarge) as error:
        decode_remote_write(b"\xff\xff\xff\xff\x0f" + b"\x00" * 10)
    assert error.value.status == 413
    # A real body that is merely bigger than the bound says so too.
    big = _body(_request([({"__name__": "a", "v": "x" * 1000}, [(1, TS)])]))
    with pytest.raises(BodyTooLarge, match="over 100"):
        decode_remote_write(big, max_uncompressed=100)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_hostile_bytes_never_escape_as_anything_but_intake_error(data: st.DataObject) -> None:
    raw = _request(
        [
            ({"__name__": "up", "job": "x"}, [(1, TS)]),
            ({"__name__": "b_bucket", "le": "1"}, [(2, TS)]),
        ]
    ).SerializeToString()
    choice = data.draw(st.integers(0, 2))
    if choice == 0:  # random bytes as the body
        body = data.draw(st.binary(max_size=300))
    else:  # valid snappy around a damaged protobuf, or a damaged snappy stream
        cut = data.draw(st.integers(0, len(raw)))
        damaged = raw[:cut] + data.draw(st.binary(max_size=8)) + raw[cut + 1 :]
        body = bytes(cramjam.snappy.compress_raw(damaged if choice == 1 else raw))
        if choice == 2:
            at = data.draw(st.integers(0, len(body) - 1))
            body = body[:at] + data.draw(st.binary(min_size=1, max_size=4)) + body[at + 1 :]
    try:
        result = decode_remote_write(body, max_uncompressed=1 << 20)
    except IntakeError:
        return
    for sample in result.samples:
        assert math.isfinite(sample.value)


def test_a_metadata_only_request_is_no_samples_and_no_error() -> None:
    """Prometheus sends metadata in requests of their own, every minute."""
    result = _decode([], metadata=[(1, "http_requests_total"), (3, "latency_seconds")])
    assert (result.samples, result.rejected, result.dropped) == ([], 0, 0)
