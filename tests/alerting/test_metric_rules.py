"""Rules over application metrics, the pure parts: Prometheus `rate`/`increase` with
counter resets and extrapolation, `histogram_quantile` over buckets, expressions (division
grouped by labels, zero denominators), their shorthand and field form, and the seed pack."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.alerting.engine.exprs import evaluate
from services.alerting.engine.functions import bucket_quantile, extrapolated_increase
from services.alerting.engine.observe import observe
from services.alerting.engine.windows import SampleStore, aggregate
from services.alerting.files import load_rules_file
from services.alerting.rules import RuleError, rule_from_doc
from services.alerting.rules.expr import Aggregate, Binary, Number, Selector
from services.alerting.rules.model import compare

INF = math.inf
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SEED = Path(__file__).parents[2] / "infra" / "alerting" / "seed-rules.yaml"


def rule(condition: str | None = None, **doc: object):  # type: ignore[no-untyped-def]
    body = {"name": "r", **doc}
    if condition is not None:
        body["condition"] = condition
    return rule_from_doc(body, tenant="t", rule_id="r1")


# --- rate / increase ---------------------------------------------------------------


def test_increase_adds_back_counter_resets() -> None:
    # 10 → 30 (+20), reset to 5 (+5), 5 → 15 (+10): 35 seen over 30 s. The window starts
    # 1 s before the first sample (under 1.1 intervals: extended by that second; the
    # counter's zero, 30 * 10/35 s back, is further); it ends at the last sample.
    points = [(1.0, 10.0), (11.0, 30.0), (21.0, 5.0), (31.0, 15.0)]
    assert extrapolated_increase(points, 0.0, 31.0) == pytest.approx(35 * 31 / 30)
    assert aggregate("rate", points, (0.0, 31.0), "counter") == pytest.approx(35 / 30)
    assert aggregate("increase", points, (0.0, 31.0)) == pytest.approx(35 * 31 / 30)


def test_rate_extrapolates_by_half_an_interval_when_samples_stop_short() -> None:
    # Samples at 100 s and 160 s in a 300 s window: each end is more than 1.1 intervals
    # away, so each side is extended by half an interval (30 s): 600 * 120/60.
    points = [(100.0, 6000.0), (160.0, 6600.0)]
    assert extrapolated_increase(points, 0.0, 300.0) == pytest.approx(1200)
    assert aggregate("rate", points, (0.0, 300.0)) == pytest.approx(1200 / 300)
    # Near the counter's zero: no extrapolation to before it (0 → 600 from 60 s on).
    assert extrapolated_increase([(60.0, 0.0), (120.0, 600.0)], 0.0, 120.0) == 600
    assert extrapolated_increase([(60.0, 1.0)], 0.0, 300.0) is None


def test_counter_delta_rate_is_the_sum_per_second_of_the_window() -> None:
    points = [(10.0, 5.0), (20.0, 7.0), (30.0, 3.0)]
    assert aggregate("rate", points, (0.0, 60.0), "counter_delta") == pytest.approx(15 / 60)
    assert aggregate("increase", points, (0.0, 60.0), "counter_delta") == 15
    # One delta is enough: it is an increase already.
    assert aggregate("rate", [(10.0, 6.0)], (0.0, 60.0), "counter_delta") == 0.1


# --- histogram_quantile ------------------------------------------------------------

BUCKETS = [(0.1, 10.0), (0.5, 50.0), (1.0, 90.0), (INF, 100.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.5),  # rank 50 = the 0.5 bucket's count: its upper bound
        (0.75, 0.8125),  # rank 75: 0.5 + 0.5 * (25 / 40)
        (0.9, 1.0),
        (0.95, 1.0),  # rank 95 is in +Inf: the highest finite bound
        (0.05, 0.05),  # rank 5 in the first bucket: 0 + 0.1 * 5/10
    ],
)
def test_bucket_quantile_interpolates_as_prometheus(q: float, expected: float) -> None:
    assert bucket_quantile(q, BUCKETS) == pytest.approx(expected)


def test_bucket_quantile_without_data_or_inf_bucket_has_no_value() -> None:
    assert bucket_quantile(0.95, [(0.1, 0.0), (INF, 0.0)]) is None
    assert bucket_quantile(0.95, [(0.1, 5.0), (1.0, 9.0)]) is None  # no +Inf
    assert bucket_quantile(0.95, [(INF, 5.0)]) is None
    # Not monotonic (buckets scraped at slightly different times): made monotonic.
    assert bucket_quantile(0.5, [(0.1, 10.0), (0.5, 8.0), (INF, 20.0)]) == pytest.approx(0.1)


def _store(*metrics: str) -> SampleStore:
    store = SampleStore()
    store.watch({("t", m): 300.0 for m in metrics})
    return store


def test_p95_of_a_histogram_uses_the_buckets_increase_per_label_set() -> None:
    store = _store("lat", "lat_bucket")
    for step, scale in ((0, 1), (60, 2)):
        for le, count in (("0.1", 10), ("0.5", 50), ("1", 90), ("+Inf", 100)):
            for service in ("web", "api"):
                base = count * (3 if service == "api" else 1)
                store.add_ts(
                    "t",
                    "lat_bucket",
                    {"service": service, "le": le},
                    1000.0 + step,
                    base * scale,
                    "histogram_bucket",
                )
    seen = list(observe(rule("p95(lat[5m]) > 0.5"), store, {}, _at(1060)))
    assert {s.labels["service"]: s.observation.value for s in seen} == {"web": 1.0, "api": 1.0}
    p50 = {
        s.labels["service"]: s.observation.value
        for s in observe(rule("p50(lat_bucket[5m]) > 0.5"), store, {}, _at(1060))
    }
    assert p50 == {"web": pytest.approx(0.5), "api": pytest.approx(0.5)}


def test_p95_of_a_gauge_stays_the_percentile_of_its_samples() -> None:
    store = _store("lat", "lat_bucket")
    for i, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        store.add_ts("t", "lat", {}, 1000.0 + i, value)
    (seen,) = observe(rule("p95(lat[5m]) > 0.5"), store, {}, _at(1010))
    assert seen.observation.value == 4.0


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- expressions -------------------------------------------------------------------


def _counters(store: SampleStore, name: str, by_service: dict[str, tuple[float, float]]) -> None:
    for service, (first, last) in by_service.items():
        store.add_ts("t", name, {"service": service, "pod": "a"}, 1000.0, first, "counter")
        store.add_ts("t", name, {"service": service, "pod": "a"}, 1060.0, last, "counter")
        store.add_ts("t", name, {"service": service, "pod": "b"}, 1000.0, first, "counter")
        store.add_ts("t", name, {"service": service, "pod": "b"}, 1060.0, last, "counter")


def test_division_grouped_by_labels_and_zero_denominators_give_no_value() -> None:
    store = _store("errors_total", "requests_total")
    _counters(store, "errors_total", {"web": (0, 30), "api": (0, 0), "idle": (0, 0)})
    _counters(store, "requests_total", {"web": (0, 100), "api": (0, 200), "idle": (5, 5)})
    r = rule(
        "sum by (service) (rate(errors_total[5m])) / sum by (service) (rate(requests_total[5m]))"
        " > 0.05"
    )
    values = {s.labels["service"]: s.observation.value for s in observe(r, store, {}, _at(1060))}
    assert values == {"web": pytest.approx(0.3), "api": 0.0, "idle": None}
    # The label sets are the `by` labels only: one alert per service, not per pod.
    assert all(set(s.labels) == {"service"} for s in observe(r, store, {}, _at(1060)))


def test_one_to_one_matching_drops_label_sets_on_one_side_and_numbers_broadcast() -> None:
    store = _store("a", "b")
    store.add_ts("t", "a", {"x": "1"}, 1000.0, 6.0)
    store.add_ts("t", "a", {"x": "2"}, 1000.0, 6.0)
    store.add_ts("t", "b", {"x": "1"}, 1000.0, 3.0)
    expr = Binary("*", Binary("/", Selector("a"), Selector("b")), Number(100))
    result = evaluate(expr, store, "t", 1001.0)
    assert isinstance(result, dict)
    assert {dict(k)["x"]: v.value for k, v in result.items()} == {"1": 200.0}
    grouped = evaluate(Aggregate("count", Selector("a")), store, "t", 1001.0)
    assert isinstance(grouped, dict) and [v.value for v in grouped.values()] == [2.0]


def test_shorthand_and_field_form_build_the_same_expression() -> None:
    text = rule(
        'sum by (service) (rate(e_total{env="prod"}[5m])) / sum by (service)'
        ' (rate(r_total{env="prod"}[5m])) > 5% for 2m'
    )
    side = {"metric": "e_total", "matchers": {"env": "prod"}, "aggregation": "rate", "window": "5m"}
    fields = rule(
        expr={
            "op": "/",
            "left": {"aggregate": "sum", "by": ["service"], "of": side},
            "right": {"aggregate": "sum", "by": ["service"], "of": {**side, "metric": "r_total"}},
        },
        op=">",
        threshold=0.05,
        **{"for": "2m"},
    )
    assert text == fields
    assert (text.threshold, text.for_, text.window, text.metric) == (0.05, 120, 300, "e_total")
    assert text.condition.startswith("sum by (service) (rate(e_total{")
    # What the API shows and stores reads back to the same rule.
    assert rule_from_doc({**text.to_doc(), "condition": None}, tenant="t", rule_id="r1") == text
    assert rule(text.condition) == text


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"expr": {"op": "%", "left": {"metric": "a"}, "right": {"metric": "b"}}}, "expr.op"),
        ({"expr": {"aggregate": "median", "of": {"metric": "a"}}}, "expr.aggregate"),
        ({"expr": {"aggregate": "sum", "by": ["9x"], "of": {"metric": "a"}}}, "expr.by.0"),
        ({"expr": {"metric": "a", "window": "2d"}}, "expr.window"),
        (
            {"expr": {"metric": "a", "matchers": [{"label": "x", "op": "=~", "value": "(a"}]}},
            "expr.matchers.0.value",
        ),
        ({"expr": {"number": 1}}, "expr"),  # no metric at all
        ({"expr": {"metric": "a"}, "metric": "a"}, "metric"),
        ({"expr": [1]}, "expr"),
    ],
)
def test_field_form_errors_name_the_path(doc: dict[str, object], field: str) -> None:
    with pytest.raises(RuleError) as info:
        rule(**doc, op=">", threshold=1)
    assert field in info.value.errors, info.value.errors


def test_expressions_are_bounded() -> None:
    deep: dict[str, object] = {"metric": "a"}
    for _ in range(40):
        deep = {"op": "+", "left": deep, "right": {"number": 1}}
    with pytest.raises(RuleError, match="at most 16"):
        rule(expr=deep, op=">", threshold=1)
    with pytest.raises(RuleError, match="nested deeper"):
        rule("(" * 40 + "a" + ")" * 40 + " > 1")
    with pytest.raises(RuleError, match="at most 16"):
        rule(" + ".join(["a"] * 20) + " > 1")


# --- the seed pack -----------------------------------------------------------------


def test_seed_rules_load_and_fire_from_samples() -> None:
    rules = load_rules_file(str(SEED))  # every rule of the pack loads
    by_name = {r.name: r for r in rules}
    store = SampleStore()
    retention: dict[tuple[str, str], float] = {}
    for r in rules:
        for metric, window in r.watches():
            retention[(r.tenant, metric)] = window
    store.watch(retention)
    now = T0 + timedelta(minutes=10)
    values = {
        "api_latency_p95": 750.0,
        "db_connections": 95.0,
        "email_delivery_rate": 90.0,
        "queue_depth": 1500.0,
        "error_rate": 0.08,
    }
    tenant = rules[0].tenant
    for metric, value in values.items():
        store.add(tenant, metric, {"service": "app"}, now - timedelta(seconds=5), value)
    five = ("ApiLatencyHigh", "DbConnectionsHigh", "EmailDeliveryRateLow", "QueueDepthHigh")
    for name in (*five, "ErrorRateHigh"):
        r = by_name[name]
        (seen,) = observe(r, store, {}, now)
        assert seen.observation.value is not None, name
        assert compare(seen.observation.value, r.op, r.threshold), name
    assert by_name["ErrorRateHigh"].threshold == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("text", "is_expr"),
    [
        ("sum(x[5m]) > 1", False),  # the window sum of each series, as always
        ("sum(x) > 1", False),
        ("sum(last(x[1m])) > 1", True),  # across series
        ("count(rate(x[1m])) > 1", True),
        ("max by (queue) (queue_depth) > 1000", True),
        ("sum(rate(x[1m])) by (a) > 1 for 1m", True),
    ],
)
def test_shown_condition_reads_back_to_the_same_rule(text: str, is_expr: bool) -> None:
    made = rule(text)
    assert (made.expr is not None) == is_expr
    assert rule(made.condition) == made


def test_a_by_list_of_objects_is_a_field_error_not_a_crash() -> None:
    # Found by the OpenAPI fuzzer: `by: [{}]` raised TypeError (unhashable) → 500.
    doc = {"aggregate": "avg", "by": [{}], "of": {"metric": "a"}}
    with pytest.raises(RuleError) as info:
        rule(expr={"op": "*", "left": {"metric": "a"}, "right": doc}, op=">", threshold=0)
    assert "expr.right.by.0" in info.value.errors
