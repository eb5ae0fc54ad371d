"""Per-tenant intake limits on an injected clock: rate (all or nothing, with a wait),
cardinality (with idle expiry), and the shape of each series."""

from __future__ import annotations

import pytest

from services.ingest.intake.limits import LimitSettings, TenantLimits
from shared.samples import Sample

TS = 1_764_560_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _samples(count: int, series: int = 1, name: str = "m") -> list[Sample]:
    labels = [{"i": str(i)} for i in range(series)]
    return [Sample(name, 1.0, TS, labels[n % series]) for n in range(count)]


def _limits(clock: Clock, **settings: float) -> TenantLimits:
    return TenantLimits(LimitSettings(**settings), clock)  # type: ignore[arg-type]


def test_settings_are_frozen_with_defaults() -> None:
    settings = LimitSettings()
    assert settings.max_series > 0 and settings.samples_per_second > 0
    with pytest.raises(AttributeError):
        settings.max_series = 1  # type: ignore[misc]
    for name in ("samples_per_second", "max_series", "series_idle_seconds"):
        with pytest.raises(ValueError, match=name):
            LimitSettings(**{name: 0})  # type: ignore[arg-type]


def test_a_request_over_the_rate_is_refused_whole_with_a_wait() -> None:
    clock = Clock()
    limits = _limits(clock, samples_per_second=100, burst_samples=300)
    assert len(limits.admit("acme", _samples(250)).samples) == 250
    refused = limits.admit("acme", _samples(100))  # 50 tokens left
    assert refused.samples == [] and refused.throttled
    assert refused.reasons == {"rate_limited": 100}
    assert refused.retry_after == pytest.approx(0.5)  # 50 more tokens at 100/s
    clock.now += 0.5
    admitted = limits.admit("acme", _samples(100))
    assert len(admitted.samples) == 100 and not admitted.throttled
    # A refused request took nothing: after the wait, the whole of it fits.


def test_a_request_bigger_than_the_bucket_passes_when_full_and_leaves_debt() -> None:
    clock = Clock()
    limits = _limits(clock, samples_per_second=100, burst_samples=100)
    assert len(limits.admit("acme", _samples(250)).samples) == 250  # bucket was full
    again = limits.admit("acme", _samples(1))
    assert again.throttled and again.retry_after == pytest.approx(1.51)  # 150 debt + 1
    clock.now += 3.0  # the debt is paid and the bucket refilled
    assert len(limits.admit("acme", _samples(250)).samples) == 250


def test_tenants_have_buckets_of_their_own() -> None:
    clock = Clock()
    limits = _limits(clock, samples_per_second=10, burst_samples=10)
    assert limits.admit("noisy", _samples(10)).samples
    assert limits.admit("noisy", _samples(1)).throttled
    assert len(limits.admit("quiet", _samples(10)).samples) == 10


def test_new_series_past_the_limit_are_refused_known_ones_pass() -> None:
    clock = Clock()
    limits = _limits(clock, max_series=3)
    first = limits.admit("acme", _samples(5, series=5))
    assert [s.labels["i"] for s in first.samples] == ["0", "1", "2"]
    assert first.reasons == {"series_limit": 2} and not first.throttled
    assert "over 3 series" in first.message
    again = limits.admit("acme", _samples(4, series=4))
    assert [s.labels["i"] for s in again.samples] == ["0", "1", "2"]
    assert limits.series_count("acme") == 3
    assert len(limits.admit("other", _samples(3, series=3, name="x")).samples) == 3


def test_series_idle_for_long_free_their_room() -> None:
    clock = Clock()
    limits = _limits(clock, max_series=2, series_idle_seconds=60)
    limits.admit("acme", _samples(2, series=2))  # series 0 and 1
    clock.now += 40
    limits.admit("acme", [Sample("m", 1.0, TS, {"i": "1"})])  # 1 seen again
    clock.now += 30  # 0 idle for 70 s: expired; 1 for 30 s: kept
    newcomer = limits.admit("acme", [Sample("m", 1.0, TS, {"i": "9"})])
    assert len(newcomer.samples) == 1
    assert limits.series_count("acme") == 2
    late = limits.admit("acme", [Sample("m", 1.0, TS, {"i": "0"})])
    assert late.reasons == {"series_limit": 1}


def test_series_are_told_apart_by_name_and_every_label() -> None:
    clock = Clock()
    limits = _limits(clock, max_series=2)
    same = [
        Sample("a", 1.0, TS, {"x": "1", "y": "2"}),
        Sample("a", 2.0, TS + 1, {"y": "2", "x": "1"}),  # label order doesn't matter
    ]
    limits.admit("acme", same)
    assert limits.series_count("acme") == 1
    limits.admit("acme", [Sample("b", 1.0, TS, {"x": "1", "y": "2"})])
    assert limits.series_count("acme") == 2


def test_the_shape_of_each_series_is_limited() -> None:
    clock = Clock()
    limits = _limits(
        clock, max_labels=3, max_label_name_len=5, max_label_value_len=8, max_name_len=10
    )
    shared = {"a": "1"}
    result = limits.admit(
        "acme",
        [
            Sample("ok", 1.0, TS, shared),
            Sample("ok", 2.0, TS, shared),
            Sample("crowded", 1.0, TS, {"a": "1", "b": "2", "c": "3", "d": "4"}),
            Sample("longname", 1.0, TS, {"abcdef": "1"}),
            Sample("longvalue", 1.0, TS, {"a": "123456789"}),
            Sample("much_too_long", 1.0, TS, {}),
        ],
    )
    assert [s.value for s in result.samples] == [1.0, 2.0]
    assert result.reasons == {"too_many_labels": 1, "label_too_long": 2, "name_too_long": 1}
    assert result.rejected == 4 and not result.throttled


def test_shape_refusals_cost_no_rate_tokens() -> None:
    clock = Clock()
    limits = _limits(clock, samples_per_second=1, burst_samples=2, max_labels=1)
    crowded = [Sample("m", 1.0, TS, {"a": "1", "b": "2"})] * 50
    bad = limits.admit("acme", crowded)
    assert bad.reasons == {"too_many_labels": 50} and not bad.throttled
    assert len(limits.admit("acme", [Sample("m", 1.0, TS)] * 2).samples) == 2


def test_the_number_of_tenants_tracked_is_bounded() -> None:
    clock = Clock()
    limits = _limits(clock, max_tenants=2, samples_per_second=1, burst_samples=1)
    for tenant in ("a", "b", "c"):
        limits.admit(tenant, _samples(1))
    assert limits.series_count("a") == 0  # forgotten, least recently seen first
    assert limits.series_count("b") == limits.series_count("c") == 1


def test_nothing_to_admit_is_not_throttled() -> None:
    admission = _limits(Clock(), samples_per_second=1, burst_samples=1).admit("acme", [])
    assert admission.samples == [] and not admission.throttled and admission.message == ""
