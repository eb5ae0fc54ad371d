"""The pure engine on a fake clock: aggregations and the state machine (for,
keep_firing_for, hysteresis, no-data, repeat, silence, ack, manual resolve)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.alerting.engine.observe import observe
from services.alerting.engine.state import (
    Alert,
    Observation,
    StateError,
    acknowledge,
    evaluate,
    resolve_manually,
)
from services.alerting.engine.windows import SampleStore, aggregate
from services.alerting.rules import rule_from_doc
from services.alerting.rules.model import Rule

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_rule(**doc: object) -> Rule:
    return rule_from_doc({"name": "r", **doc}, tenant="t", rule_id="rule-1")


class Run:
    """Drives one alert through evaluations, remembering the states it went through."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.alert = Alert("fp", rule.id, "t", {"service": "api"}, rule.severity)
        self.notified: list[str] = []
        self.states: list[str] = []

    def at(
        self,
        seconds: float,
        value: float | None,
        *,
        stale: bool = False,
        silence: str | None = None,
    ) -> str:
        self.alert, changes = evaluate(
            self.alert, self.rule, Observation(value, stale), at(seconds), silence
        )
        self.notified += [c.notify for c in changes if c.notify]
        self.states += [c.to_state for c in changes if c.is_transition]
        return self.alert.state


POINTS = [(0.0, 4.0), (10.0, 1.0), (20.0, 3.0), (30.0, 2.0)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("avg", 2.5),
        ("min", 1),
        ("max", 4),
        ("sum", 10),
        ("count", 4),
        ("last", 2),
        ("p50", 2),
        ("p95", 4),
        ("p99", 4),
    ],
)
def test_aggregations(name: str, expected: float) -> None:
    assert aggregate(name, POINTS) == expected


def test_rate_is_per_second_and_survives_counter_resets() -> None:
    assert aggregate("rate", [(0.0, 10.0), (10.0, 30.0)]) == 2.0
    # 10 -> 30 (+20), reset to 5 (+5), 5 -> 15 (+10): 35 over 30 s
    assert aggregate(
        "rate", [(0.0, 10.0), (10.0, 30.0), (20.0, 5.0), (30.0, 15.0)]
    ) == pytest.approx(35 / 30)
    assert aggregate("rate", [(0.0, 1.0)]) is None
    assert aggregate("avg", []) is None


def test_sliding_window_drops_old_samples() -> None:
    rule = make_rule(condition="avg(lat[60s]) > 1")
    store = SampleStore()
    store.watch({("t", "lat"): 60})
    for second, value in [(0, 10.0), (30, 2.0), (70, 0.5)]:
        assert store.add("t", "lat", {"service": "api"}, at(second), value)
    assert not store.add("t", "other", {}, at(70), 1.0)  # nobody watches it
    assert not store.add("u", "lat", {}, at(70), 1.0)  # other tenant
    (seen,) = observe(rule, store, {}, at(70))
    assert seen.observation.value == pytest.approx(1.25)  # samples at 30 s and 70 s


def test_for_holds_pending_until_it_elapses() -> None:
    run = Run(make_rule(condition="x > 5 for 5m"))
    assert run.at(0, 9) == "pending"
    assert run.at(200, 9) == "pending"
    assert run.at(299, 9) == "pending"
    assert run.at(300, 9) == "firing"
    assert run.notified == ["firing"]
    assert run.at(310, 1) == "resolved"
    assert run.notified == ["firing", "resolved"]


def test_pending_that_clears_never_notifies() -> None:
    run = Run(make_rule(condition="x > 5 for 1m"))
    run.at(0, 9)
    assert run.at(30, 1) == "inactive"
    assert run.notified == []
    assert run.states == ["pending", "inactive"]


def test_keep_firing_for_rides_out_a_dip() -> None:
    run = Run(make_rule(condition="x > 5", keep_firing_for="2m"))
    assert run.at(0, 9) == "firing"
    assert run.at(60, 1) == "firing"
    assert run.at(119, 1) == "firing"
    assert run.at(120, 1) == "resolved"


def test_clear_threshold_prevents_flapping() -> None:
    run = Run(make_rule(condition="x > 5", clear_threshold=3))
    assert run.at(0, 6) == "firing"
    assert run.at(10, 4) == "firing"  # below 5 but above the clear threshold
    assert run.at(20, 5.5) == "firing"
    assert run.at(30, 2) == "resolved"
    assert run.at(40, 4) == "resolved"  # not above 5: no new episode
    assert run.notified == ["firing", "resolved"]


def test_no_data_alert_keep_resolve() -> None:
    alerting = Run(make_rule(condition="x > 5", no_data={"mode": "alert", "windows": 2}))
    assert alerting.at(0, None) == "inactive"  # quiet, but not for two windows yet
    assert alerting.at(120, None, stale=True) == "firing"
    assert alerting.alert.no_data
    assert alerting.at(130, 1) == "resolved"

    keep = Run(make_rule(condition="x > 5", no_data="keep"))
    assert keep.at(0, 9) == "firing"
    assert keep.at(600, None, stale=True) == "firing"

    resolve = Run(make_rule(condition="x > 5", no_data="resolve"))
    assert resolve.at(0, 9) == "firing"
    assert resolve.at(600, None, stale=True) == "resolved"
    assert resolve.notified == ["firing", "resolved"]


def test_quiet_series_is_observed_stale_after_n_windows() -> None:
    rule = make_rule(condition="count(hb[60s]) < 1", no_data={"mode": "alert", "windows": 1})
    store = SampleStore()
    store.watch({("t", "hb"): 60})
    store.add("t", "hb", {"service": "api"}, at(0), 1)
    (fresh,) = observe(rule, store, {}, at(59))
    assert (fresh.observation.value, fresh.observation.stale) == (1.0, False)
    (quiet,) = observe(rule, store, {}, at(61))
    assert (quiet.observation.value, quiet.observation.stale) == (None, True)


def test_repeat_interval_renotifies_a_still_firing_alert() -> None:
    run = Run(make_rule(condition="x > 5", repeat_interval="1h"))
    run.at(0, 9)
    run.at(3599, 9)
    assert run.notified == ["firing"]
    run.at(3600, 9)
    assert run.notified == ["firing", "firing"]
    assert run.states == ["firing"]  # a repeat is no transition
    run.at(3700, 9)
    assert run.notified == ["firing", "firing"]


def test_silence_suppresses_and_its_end_announces() -> None:
    run = Run(make_rule(condition="x > 5"))
    assert run.at(0, 9, silence="s1") == "silenced"
    assert run.notified == []
    assert run.at(10, 9) == "firing"  # silence over: now it is announced
    assert run.notified == ["firing"]
    assert run.at(20, 9, silence="s1") == "silenced"
    assert run.at(30, 1, silence="s1") == "resolved"
    assert run.notified == ["firing", "resolved"]  # announced before: resolved still goes


def test_silenced_and_never_announced_resolves_quietly() -> None:
    run = Run(make_rule(condition="x > 5"))
    run.at(0, 9, silence="s1")
    assert run.at(10, 1, silence="s1") == "resolved"
    assert run.notified == []


def test_ack_stops_repeats_and_is_idempotent() -> None:
    run = Run(make_rule(condition="x > 5", repeat_interval="10m"))
    run.at(0, 9)
    run.alert, changes = acknowledge(run.alert, at(10), "alice")
    assert run.alert.state == "acknowledged" and run.alert.acknowledged_by == "alice"
    assert [c.notify for c in changes] == [None]
    again, changes = acknowledge(run.alert, at(11), "bob")
    assert changes == [] and again.acknowledged_by == "alice"
    run.at(1200, 9)
    assert run.notified == ["firing"]  # no repeat while acknowledged
    assert run.at(1300, 1) == "resolved"
    assert run.notified == ["firing", "resolved"]
    with pytest.raises(StateError):
        acknowledge(run.alert, at(1400), "alice")


def test_manual_resolve_sends_resolved_once() -> None:
    run = Run(make_rule(condition="x > 5"))
    run.at(0, 9)
    alert, changes = resolve_manually(run.alert, at(5), "alice")
    assert alert.state == "resolved" and [c.notify for c in changes] == ["resolved"]
    assert changes[0].fired_at == at(0)
    again, changes = resolve_manually(alert, at(6), "alice")
    assert changes == [] and again is alert


def test_a_firing_series_going_quiet_is_announced_again_and_flagged() -> None:
    run = Run(make_rule(condition="x > 5", no_data={"mode": "alert", "windows": 2}))
    assert run.at(0, 9) == "firing"
    assert run.at(60, None) == "firing" and not run.alert.no_data  # not quiet long enough
    assert run.at(120, None, stale=True) == "firing" and run.alert.no_data
    assert run.notified == ["firing", "firing"]  # receivers learn the data stopped
    assert run.at(130, None, stale=True) == "firing"
    assert run.notified == ["firing", "firing"]  # once
    assert run.at(140, 9) == "firing" and not run.alert.no_data
    assert run.at(150, 1) == "resolved"
    assert run.notified == ["firing", "firing", "resolved"]


def test_keep_and_resolve_modes_flag_the_quiet_series() -> None:
    keep = Run(make_rule(condition="x > 5", no_data="keep"))
    keep.at(0, 9)
    _, changes = evaluate(keep.alert, keep.rule, Observation(None, True), at(600))
    (change,) = changes  # no transition, no notification: the flag is written
    assert change.alert.no_data and not change.is_transition and change.notify is None
    resolve = Run(make_rule(condition="x > 5", no_data="resolve"))
    resolve.at(0, 9)
    assert resolve.at(600, None, stale=True) == "resolved" and resolve.alert.no_data
    assert resolve.at(610, 1) == "resolved" and not resolve.alert.no_data


def test_cooldown_holds_a_second_firing_and_sends_it_when_over() -> None:
    run = Run(make_rule(condition="x > 5", cooldown="10m"))
    assert run.at(0, 9) == "firing"
    assert run.at(60, 1) == "resolved"
    assert run.at(120, 9) == "firing"  # inside the cooldown of the first firing
    assert run.notified == ["firing", "resolved"] and not run.alert.announced
    assert run.at(300, 9) == "firing"
    assert run.notified == ["firing", "resolved"]
    assert run.at(600, 9) == "firing"  # 600 s after the first firing notification
    assert run.notified == ["firing", "resolved", "firing"] and run.alert.announced
    assert run.at(660, 1) == "resolved"  # 600 s after the first resolved: goes out
    assert run.notified == ["firing", "resolved", "firing", "resolved"]


def test_cooldown_swallows_a_flap_and_holds_a_resolved() -> None:
    run = Run(make_rule(condition="x > 5", cooldown=600))
    run.at(0, 9)
    run.at(100, 1)
    assert run.at(650, 9) == "firing"
    assert run.notified == ["firing", "resolved", "firing"]
    assert run.at(660, 1) == "resolved"  # 560 s after the last resolved: held
    assert run.alert.announced  # receivers still see it firing
    assert run.at(670, 9) == "firing"  # and it is: nothing to say
    assert run.at(680, 1) == "resolved"
    assert run.notified == ["firing", "resolved", "firing"]
    assert run.at(700, 1) == "resolved"  # 600 s after the last resolved
    assert run.notified == ["firing", "resolved", "firing", "resolved"]
    assert not run.alert.announced
    assert run.at(710, 1) == "resolved"
    assert len(run.notified) == 4


def test_cooldown_stretches_repeats_and_skips_manual_resolves() -> None:
    run = Run(make_rule(condition="x > 5", repeat_interval="1m", cooldown="5m"))
    for second in range(0, 601, 60):
        run.at(second, 9)
    assert run.notified == ["firing", "firing", "firing"]  # at 0, 300, 600
    after, changes = resolve_manually(run.alert, at(610), "ops")
    assert [c.notify for c in changes] == ["resolved"]
    assert not after.announced
