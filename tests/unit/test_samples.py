"""The `metric.v2` contract: what a producer writes is what a consumer reads back, and every
bound holds on the consumer's side, where the bytes come from a queue anyone upstream
may have written."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contracts import encode_batch, make_envelope, now_iso
from shared.ids import new_event_id
from shared.samples import (
    MAX_LABEL_VALUE_LEN,
    MAX_LABELS,
    MAX_NAME_LEN,
    MAX_SAMPLES_PER_EVENT,
    MAX_TS_MS,
    METRIC_V2,
    Sample,
    SampleContractError,
    chunks,
    decode_metric_v2_batch,
    metric_v2_data,
    valid_label_name,
    valid_metric_name,
    validate_metric_v2,
)

TS = 1_764_560_000_000


def _sample(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": "http_requests_total",
        "value": 3.0,
        "ts": TS,
        "labels": {"service": "web"},
        "kind": "counter",
    }
    doc.update(changes)
    return doc


def _envelope(samples: list[Sample], tenant: str = "acme") -> dict[str, object]:
    at = now_iso()
    return make_envelope(new_event_id(), METRIC_V2, tenant, at, at, metric_v2_data(samples))


def test_samples_survive_the_producer_and_consumer_path() -> None:
    samples = [
        Sample("http_requests_total", 1027.0, TS, {"service": "web", "code": "200"}, "counter"),
        Sample("latency_bucket", 7.0, TS, {"le": "0.25"}, "histogram_bucket"),
        Sample("queue_depth", 12.5, TS),
    ]
    body = encode_batch([_envelope(samples), _envelope(samples[:1], "other")])

    decoded = decode_metric_v2_batch(body)
    assert [e.tenant for e in decoded] == ["acme", "other"]
    assert decoded[0].data.samples == samples
    assert decoded[0].type == METRIC_V2
    # The same `data`, as the generic batch reader (orjson) gives it to a contract check.
    data = orjson.loads(body)[0]["data"]
    assert validate_metric_v2(data).samples == samples
    # Defaults stay off the wire: a gauge says nothing about its kind.
    assert "kind" not in data["samples"][2]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"name": "1abc"}, "samples[0].name"),
        ({"name": "http.requests"}, "samples[0].name"),
        ({"name": "abc\n"}, "samples[0].name"),  # `$` would let this through
        ({"name": "a" * (MAX_NAME_LEN + 1)}, "samples[0].name"),
        ({"labels": {"__name__": "x"}}, "labels"),
        ({"labels": {"bad-name": "x"}}, "labels"),
        ({"labels": {"a": "x\x00"}}, "labels"),
        ({"labels": {"a": "x" * (MAX_LABEL_VALUE_LEN + 1)}}, "labels"),
        ({"labels": {f"l{i}": "v" for i in range(MAX_LABELS + 1)}}, "labels"),
        ({"value": math.nan}, "samples[0]"),
        ({"value": math.inf}, "samples[0]"),
        ({"value": "3"}, "samples[0].value"),
        ({"ts": -1}, "samples[0].ts"),
        ({"ts": MAX_TS_MS + 1}, "samples[0].ts"),
        ({"ts": "2025-01-01T00:00:00Z"}, "samples[0].ts"),
        ({"kind": "histogram"}, "samples[0].kind"),
        ({"kind": "histogram_bucket"}, "samples[0]"),  # without `le`
        ({"kind": "summary_quantile"}, "samples[0]"),  # without `quantile`
        ({"extra": 1}, "samples[0]"),
    ],
)
def test_a_sample_outside_the_contract_is_refused_naming_where(
    change: dict[str, object], where: str
) -> None:
    with pytest.raises(SampleContractError, match=r"data\.samples\[0\]") as refused:
        validate_metric_v2({"samples": [_sample(**change)]})
    assert where.split(".")[-1] in str(refused.value)


def test_an_event_holds_one_to_max_samples() -> None:
    for samples in ([], [_sample()] * (MAX_SAMPLES_PER_EVENT + 1)):
        with pytest.raises(SampleContractError, match=r"data\.samples"):
            validate_metric_v2({"samples": samples})
    with pytest.raises(SampleContractError, match="unknown field"):
        validate_metric_v2({"samples": [_sample()], "tenant": "belfry"})
    with pytest.raises(SampleContractError):
        metric_v2_data([])
    with pytest.raises(SampleContractError):
        metric_v2_data([Sample("a", 1.0, TS)] * (MAX_SAMPLES_PER_EVENT + 1))


def test_chunks_cut_a_request_into_events_of_bounded_size() -> None:
    samples = [Sample("a", float(i), TS) for i in range(2 * MAX_SAMPLES_PER_EVENT + 1)]
    parts = chunks(samples)
    assert [len(p) for p in parts] == [MAX_SAMPLES_PER_EVENT, MAX_SAMPLES_PER_EVENT, 1]
    assert [s for p in parts for s in p] == samples


def test_non_finite_values_never_enter_a_sample() -> None:
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            Sample("a", value, TS)
    with pytest.raises(ValueError, match="le"):
        Sample("a_bucket", 1.0, TS, {}, "histogram_bucket")
    # JSON has no NaN, and a huge exponent is not infinity either.
    with pytest.raises(SampleContractError):
        decode_metric_v2_batch(b'[{"value": NaN}]')
    body = encode_batch([_envelope([Sample("a", 1.0, TS)])]).replace(b"1.0", b"1e400")
    with pytest.raises(SampleContractError):
        decode_metric_v2_batch(body)


def test_a_batch_with_anything_but_valid_metric_v2_envelopes_is_refused() -> None:
    good = _envelope([Sample("a", 1.0, TS)])
    bad_envelopes = [
        {**good, "type": "metric.v1"},
        {**good, "tenant": "Acme!"},
        {**good, "id": "not-a-uuid"},
        {**good, "occurred_at": "2025-01-01T00:00:00"},  # no UTC offset
    ]
    for envelope in bad_envelopes:
        with pytest.raises(SampleContractError):
            decode_metric_v2_batch(encode_batch([good, envelope]))
    with pytest.raises(SampleContractError):
        decode_metric_v2_batch(b"not json")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_the_name_checks_agree_with_the_decoder(text: str) -> None:
    """Decoders check names with valid_*; consumers with msgspec's patterns: one rule."""
    try:
        validate_metric_v2({"samples": [_sample(name=text)]})
        decoded_ok = True
    except SampleContractError:
        decoded_ok = False
    assert decoded_ok == valid_metric_name(text)
    try:
        validate_metric_v2({"samples": [_sample(labels={text: "v"})]})
        label_ok = True
    except SampleContractError:
        label_ok = False
    assert label_ok == valid_label_name(text)
