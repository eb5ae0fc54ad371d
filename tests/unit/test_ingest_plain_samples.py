"""`/v1/samples` items (services/ingest/intake/plain.py), decoded through
contracts.PlainSample: each problem is refused with the reason code and message the
hand-written checks gave, and a good item becomes its sample."""

from __future__ import annotations

from typing import Any

import pytest

from services.ingest.intake.plain import decode_plain
from shared.samples import Sample

NOW_MS = 1_740_826_800_000


def refusal(**changes: Any) -> tuple[dict[str, int], str]:
    item: dict[str, Any] = {"name": "up", "value": 1}
    item.update(changes)
    result = decode_plain([{k: v for k, v in item.items() if v is not ...}], NOW_MS)
    assert not result.samples
    [problem] = result.errors
    return dict(result.reasons), problem["error"]


@pytest.mark.parametrize(
    ("changes", "reason", "message"),
    [
        ({"colour": "red"}, "bad_point", "unknown fields: colour"),
        ({"name": ...}, "bad_name", "name must be a metric name like http_requests_total"),
        ({"name": 5}, "bad_name", "name must be a metric name like http_requests_total"),
        ({"name": "9up"}, "bad_name", "name must be a metric name like http_requests_total"),
        ({"value": ...}, "bad_point", "value must be a number"),
        ({"value": True}, "bad_point", "value must be a number"),
        ({"value": "1"}, "bad_point", "value must be a number"),
        ({"kind": "nope"}, "bad_point", "kind must be one of gauge, counter, counter_delta,"),
        ({"labels": "x"}, "bad_label", "labels must be an object of strings"),
        ({"labels": {"a": 1}}, "bad_label", "label a must be a string"),
        ({"labels": {"__a": "1"}}, "bad_label", "label name '__a' is not a label name"),
        ({"ts": True}, "bad_timestamp", "ts must be epoch seconds or an RFC 3339 string"),
        ({"ts": "nope"}, "bad_timestamp", "ts is not an RFC 3339 timestamp"),
        ({"ts": "2030-01-01T00:00:00Z"}, "bad_timestamp", "ts is in the future"),
        ({"kind": "histogram_bucket"}, "bad_point", "needs an `le` label"),
    ],
)
def test_each_problem_keeps_its_reason(changes: dict[str, Any], reason: str, message: str) -> None:
    reasons, text = refusal(**changes)
    assert reasons == {reason: 1}
    assert text.startswith(message) or message in text


def test_a_good_item_becomes_its_sample() -> None:
    item = {"name": "up", "value": 2, "labels": {"a": "b", "e": ""}, "ts": 1_740_826_700}
    result = decode_plain([item, ["not an item"]], NOW_MS)
    assert result.samples == [Sample("up", 2.0, 1_740_826_700_000, {"a": "b"}, "gauge")]
    assert result.errors == [{"index": 1, "error": "item must be an object"}]
