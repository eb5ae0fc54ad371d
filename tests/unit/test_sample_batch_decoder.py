"""The consumer's fast `metric.v2` decoder (shared.samples.SampleBatchDecoder) accepts
exactly what the strict decoder accepts, and reads the same samples: its caches of names
and label sets that passed must never let a bad one through."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.contracts import make_envelope, now_iso
from shared.ids import new_event_id
from shared.samples import (
    MAX_LABEL_VALUE_LEN,
    MAX_LABELS,
    MAX_NAME_LEN,
    MAX_SAMPLES_PER_EVENT,
    MAX_TS_MS,
    METRIC_V2,
    SampleBatchDecoder,
    SampleContractError,
    decode_metric_v2_batch,
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
    return {k: v for k, v in doc.items() if v is not _GONE}


_GONE = object()


def _body(*samples: dict[str, object], tenant: str = "acme") -> bytes:
    at = now_iso()
    envelope = make_envelope(new_event_id(), METRIC_V2, tenant, at, at, {"samples": list(samples)})
    return orjson.dumps([envelope])


def _strict(body: bytes) -> list[tuple[str, list[tuple[Any, ...]]]]:
    return [
        (e.tenant, [(s.name, s.labels, s.ts, s.value, s.kind) for s in e.data.samples])
        for e in decode_metric_v2_batch(body)
    ]


def test_reads_what_the_strict_decoder_reads() -> None:
    body = _body(
        _sample(),
        _sample(name="lat_bucket", labels={"le": "0.5"}, kind="histogram_bucket"),
        _sample(name="rpc", labels={"quantile": "0.9"}, kind="summary_quantile"),
        _sample(name="queue_depth", labels=_GONE, kind=_GONE),  # the defaults
        _sample(value=7),  # an integer is a float
    )
    decoder = SampleBatchDecoder()
    assert decoder.decode(body) == _strict(body)
    assert decoder.decode(body) == _strict(body)  # again, from the caches


@pytest.mark.parametrize(
    "change",
    [
        {"name": "1abc"},
        {"name": "http.requests"},
        {"name": "abc\n"},
        {"name": "a" * (MAX_NAME_LEN + 1)},
        {"labels": {"__name__": "x"}},
        {"labels": {"bad-name": "x"}},
        {"labels": {"a": "x\x00"}},
        {"labels": {"a": "x" * (MAX_LABEL_VALUE_LEN + 1)}},
        {"labels": {f"l{i}": "v" for i in range(MAX_LABELS + 1)}},
        {"labels": None},
        {"labels": ["a", "b"]},
        {"labels": {"a": 1}},
        {"value": math.nan},  # JSON null
        {"value": "3"},
        {"ts": -1},
        {"ts": MAX_TS_MS + 1},
        {"kind": "histogram"},
        {"kind": "histogram_bucket"},  # without `le`
        {"kind": "summary_quantile"},  # without `quantile`
        {"extra": 1},
    ],
)
def test_refuses_what_the_strict_decoder_refuses(change: dict[str, object]) -> None:
    decoder = SampleBatchDecoder()
    good = _body(_sample())
    decoder.decode(good)  # warm the caches with the good name and labels
    bad = _body(_sample(), _sample(**change))
    with pytest.raises(SampleContractError):
        decode_metric_v2_batch(bad)
    with pytest.raises(SampleContractError):
        decoder.decode(bad)


def test_refuses_bad_envelopes_and_event_sizes() -> None:
    decoder = SampleBatchDecoder()
    for body in (
        b"not json",
        b"{}",
        _body(_sample(), tenant="Not A Tenant"),
        _body(),
        _body(*[_sample()] * (MAX_SAMPLES_PER_EVENT + 1)),
        _body(_sample()).replace(b'"metric.v2"', b'"metric.v1"'),
    ):
        with pytest.raises(SampleContractError):
            decoder.decode(body)


def test_caches_stay_bounded() -> None:
    decoder = SampleBatchDecoder(max_cached=3)
    for i in range(10):
        decoder.decode(_body(_sample(name=f"m{i}", labels={"i": str(i)})))
        assert len(decoder._labels) <= 3
        assert len(decoder._names) <= 3


_names = st.one_of(
    st.sampled_from(["up", "a:b", "_x", "1bad", "a.b", "a-b", "é", "a\n", ""]),
    st.text(max_size=8),
)
_label_names = st.one_of(st.sampled_from(["job", "le", "__x", "a b", "9", ""]), st.text(max_size=6))
_values = st.one_of(st.sampled_from(["", "v", "a\x00"]), st.text(max_size=6))
_docs = st.fixed_dictionaries(
    {
        "name": _names,
        "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 5)),
        "ts": st.integers(-2, MAX_TS_MS + 2),
        "labels": st.dictionaries(_label_names, _values, max_size=4),
        "kind": st.sampled_from(["gauge", "counter", "histogram_bucket", "summary_quantile", "x"]),
    }
)


# One decoder for every example: what an earlier one cached must not wave a later one by.
_shared = SampleBatchDecoder()


@settings(max_examples=300, deadline=None)
@given(st.lists(_docs, min_size=1, max_size=4))
def test_accepts_exactly_what_the_strict_decoder_accepts(docs: list[dict[str, Any]]) -> None:
    body = _body(*docs)
    decoder = _shared
    try:
        expected = _strict(body)
    except SampleContractError:
        with pytest.raises(SampleContractError):
            decoder.decode(body)
        return
    assert decoder.decode(body) == expected
