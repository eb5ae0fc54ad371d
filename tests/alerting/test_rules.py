"""Rules: shorthand conditions, durations, validation with field errors, templates, and
the default rule pack."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.alerting.files import FileError, load_channels_file, load_rules_file
from services.alerting.rules import RuleError, fingerprint, rule_from_doc
from services.alerting.rules.model import Matcher
from services.alerting.rules.parse import ParseError, parse_condition, parse_duration
from services.alerting.rules.template import render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
        (90, 90),
        ("15", 15),
    ],
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize(
    "raw",
    ["", "5x", "m5", "-1", -3, True, "5m foo", None, "nan", "inf", "1e400", 1e16, "999999999999d"],
)
def test_bad_durations(raw: object) -> None:
    with pytest.raises(ParseError):
        parse_duration(raw)


def test_shorthand_as_operators_write_it() -> None:
    cond = parse_condition("api_latency_p95 > 500")
    assert (cond.metric, cond.op, cond.threshold, cond.for_) == ("api_latency_p95", ">", 500, None)
    cond = parse_condition("error_rate > 5 for 5m")
    assert (cond.metric, cond.threshold, cond.for_) == ("error_rate", 5, 300)


def test_shorthand_full_form() -> None:
    cond = parse_condition(
        'p95(http_latency{service="api", route=~"/v1/.*", env!=\'dev\'}[2m]) >= 0.5 for 30s'
    )
    assert cond.aggregation == "p95"
    assert cond.window == 120
    assert cond.for_ == 30
    assert cond.op == ">="
    assert cond.matchers == (
        Matcher("service", "=", "api"),
        Matcher("route", "=~", "/v1/.*"),
        Matcher("env", "!=", "dev"),
    )
    assert parse_condition("belfry_http_error_rate > 5%").threshold == pytest.approx(0.05)


@pytest.mark.parametrize(
    "text", ["error_rate >", "> 5", "error_rate ~ 5", "avg(x > 5", "x{a=} > 1", "x > 5 for"]
)
def test_bad_shorthand(text: str) -> None:
    with pytest.raises(ParseError):
        parse_condition(text)


def test_rule_from_condition_gets_defaults() -> None:
    rule = rule_from_doc(
        {"name": "r", "condition": "error_rate > 5 for 5m"}, tenant="t", rule_id="1"
    )
    assert (rule.metric, rule.threshold, rule.for_, rule.aggregation) == (
        "error_rate",
        5,
        300,
        "last",
    )
    assert (rule.no_data, rule.severity, rule.repeat_interval) == ("alert", "warning", 14400)
    again = rule_from_doc({**rule.to_doc(), "condition": None}, tenant="t", rule_id="1")
    assert again == rule


def test_validation_names_every_bad_field() -> None:
    with pytest.raises(RuleError) as info:
        rule_from_doc(
            {
                "name": "",
                "metric": "9bad",
                "op": "=>",
                "threshold": "high",
                "aggregation": "median",
                "window": "forever",
                "severity": "fatal",
                "labels": {"alertname": "x"},
                "annotations": {"summary": "{{ os.system }}"},
                "channels": ["Not A Name"],
                "no_data": {"mode": "panic", "windows": 0},
                "matchers": [{"label": "a", "op": "=~", "value": "("}],
                "surprise": 1,
            },
            tenant="t",
            rule_id="1",
        )
    assert set(info.value.errors) >= {
        "name",
        "metric",
        "op",
        "threshold",
        "window",
        "severity",
        "labels.alertname",
        "annotations.summary",
        "channels.0",
        "no_data.mode",
        "no_data.windows",
        "matchers.0.value",
        "surprise",
    }


def test_condition_and_fields_conflict() -> None:
    with pytest.raises(RuleError) as info:
        rule_from_doc({"name": "r", "condition": "x > 1", "threshold": 2}, tenant="t", rule_id="1")
    assert "threshold" in info.value.errors


def test_templates_substitute_and_never_evaluate() -> None:
    text = (
        "{{ labels.service }} at {{ value }} (>{{ $threshold }}) {{ __import__ }} {{ $labels.x }}"
    )
    out = render(
        text, value=0.123456, labels={"service": "api"}, threshold=0.1, rule="r", severity="info"
    )
    assert out == "api at 0.1235 (>0.1)  "
    assert (
        render("{{ value }}", value=None, labels={}, threshold=1, rule="r", severity="x")
        == "no data"
    )


def test_fingerprint_is_stable_and_label_order_free() -> None:
    a = fingerprint("rule-1", {"service": "api", "queue": "q"})
    assert a == fingerprint("rule-1", {"queue": "q", "service": "api"})
    assert a != fingerprint("rule-2", {"service": "api", "queue": "q"})
    assert len(a) == 16


def test_default_rule_pack_loads() -> None:
    rules = {r.name: r for r in load_rules_file(str(ROOT / "infra/alerting/rules.yaml"))}
    assert rules["BelfryHighErrorRate"].threshold == pytest.approx(0.05)
    assert rules["BelfryHighErrorRate"].for_ == 300
    heartbeat = rules["BelfryHeartbeatMissing"]
    assert (heartbeat.metric, heartbeat.no_data, heartbeat.window) == (
        "belfry_heartbeat",
        "alert",
        60,
    )
    assert {r.metric for r in rules.values()} == {
        "belfry_http_error_rate",
        "belfry_http_latency_p95_seconds",
        "belfry_queue_depth",
        "belfry_writer_lag_seconds",
        "belfry_process_rss_bytes",
        "belfry_heartbeat",
        "belfry_notifications_failed",
    }
    assert all(r.tenant == "belfry" for r in rules.values())
    channels = load_channels_file(str(ROOT / "infra/alerting/channels.example.yaml"))
    assert {c.type for c in channels} == {"webhook", "slack", "email", "alertmanager"}


def test_bad_rule_file_names_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: broken\n    condition: 'x >'\n")
    with pytest.raises(FileError, match=r"broken.*condition"):
        load_rules_file(str(path))


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("condition: 'x > 1e999'", r"condition: threshold 1e999 is not a finite number"),
        ("metric: x\n    op: '>'\n    threshold: 1.0e999", r"threshold: .*finite"),
        ("condition: 'x > 1'\n    keep_firing_for: .inf", r"keep_firing_for: .*finite"),
        ("condition: 'x{a=~\"(a)\\\\1\"} > 1'", r"condition: a: not a valid RE2 .*escape"),
        ('condition: "x > 1"\n    annotations: {a: "\\0"}', r"annotations.a: .*NUL"),
    ],
    ids=["infinite-condition", "infinite-threshold", "infinite-for", "backreference", "nul"],
)
def test_rule_file_with_what_cannot_be_stored_or_run_names_the_problem(
    tmp_path: Path, entry: str, reason: str
) -> None:
    """`rules check|load` refuse, with the field, what the API refuses (issue 13)."""
    path = tmp_path / "rules.yaml"
    path.write_text(f"rules:\n  - name: bad\n    {entry}\n")
    with pytest.raises(FileError, match=rf"rule 0 \(bad\): {reason}"):
        load_rules_file(str(path))


def test_regex_matchers_are_re2_fully_anchored_and_linear() -> None:
    hostile = {"path": "a" * 5000 + "!"}
    started = time.monotonic()
    assert not Matcher("path", "=~", "(a+)+").matches(hostile)
    assert Matcher("path", "!~", "(a+)+$").matches(hostile)
    assert time.monotonic() - started < 0.5  # Python's re: longer than the universe
    assert Matcher("route", "=~", "/v1/.*").matches({"route": "/v1/track"})
    assert not Matcher("route", "=~", "v1").matches({"route": "/v1/track"})  # anchored
    assert Matcher("route", "=~", "a|/v1/track").matches({"route": "/v1/track"})
    assert Matcher("city", "=~", "Z.rich").matches({"city": "Zürich"})  # characters, not bytes
    assert Matcher("absent", "=~", ".*").matches({})


def test_cooldown_and_group_wait_are_bounded_durations() -> None:
    rule = rule_from_doc(
        {"name": "r", "condition": "x > 1", "cooldown": "10m", "group_wait": 0},
        tenant="t",
        rule_id="1",
    )
    assert (rule.cooldown, rule.group_wait) == (600, 0)
    assert rule_from_doc({**rule.to_doc(), "condition": None}, tenant="t", rule_id="1") == rule
    default = rule_from_doc({"name": "r", "condition": "x > 1"}, tenant="t", rule_id="1")
    assert (default.cooldown, default.group_wait) == (0, None)  # None: the service's
    assert default.to_doc()["group_wait"] is None
    for bad in ("1e999", 1e308, -1, "367d", "soon", True, "nan"):
        with pytest.raises(RuleError) as info:
            rule_from_doc(
                {"name": "r", "condition": "x > 1", "cooldown": bad}, tenant="t", rule_id="1"
            )
        assert set(info.value.errors) == {"cooldown"}, bad
    for bad in ("2h", 3601, -0.5, "1e999"):
        with pytest.raises(RuleError) as info:
            rule_from_doc(
                {"name": "r", "condition": "x > 1", "group_wait": bad}, tenant="t", rule_id="1"
            )
        assert set(info.value.errors) == {"group_wait"}, bad
