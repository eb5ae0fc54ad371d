"""The fuzz run's hooks (tests/fuzz/hooks.py) on cases made by hand: a rule the document
cannot state is applied to positive cases, right before they go out too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tests.fuzz import hooks


def _case(path: str, method: str, body: dict[str, Any], *, positive: bool = True) -> Any:
    mode = SimpleNamespace(is_positive=positive)
    return SimpleNamespace(
        operation=SimpleNamespace(path=path),
        method=method,
        body=body,
        meta=SimpleNamespace(generation=SimpleNamespace(mode=mode)),
        path_parameters={},
    )


def _ends(case: Any) -> datetime:
    return datetime.fromisoformat(case.body["ends_at"])


@pytest.mark.parametrize("ahead", [timedelta(seconds=-5), timedelta(seconds=2)])
def test_a_stored_end_reused_without_a_start_is_moved_ahead_before_the_call(
    ahead: timedelta,
) -> None:
    """The stateful phase PUTs a listed silence's `ends_at`, filled in after map_case: by
    then it may have passed (400 "must be after starts_at", an ST202 failure)."""
    stored = (datetime.now(UTC) + ahead).isoformat()
    body = {"author": "a", "matchers": {"a": "b"}, "ends_at": stored}
    case = _case("/api/v1/silences/{silence_id}", "PUT", body)
    hooks.before_call(None, case, {})
    assert _ends(case) > datetime.now(UTC) + timedelta(minutes=30)


def test_an_end_well_ahead_or_after_a_start_and_negative_cases_are_kept() -> None:
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    kept = _case("/api/v1/silences", "POST", {"author": "a", "ends_at": later})
    hooks.before_call(None, kept, {})
    assert kept.body["ends_at"] == later
    past = "2001-01-01T00:00:00+00:00"
    negative = _case("/api/v1/silences", "POST", {"ends_at": past}, positive=False)
    hooks.before_call(None, negative, {})
    assert negative.body == {"ends_at": past}
    started = _case(
        "/api/v1/silences", "POST", {"starts_at": "2000-01-01T00:00:00Z", "ends_at": past}
    )
    hooks.before_call(None, started, {})
    assert started.body["ends_at"] == past


def test_a_stats_range_from_ahead_of_now_without_to_gets_a_to_after_it() -> None:
    """`to` defaults to now, so `from` in the future alone is an empty range (a 400 the
    document cannot state): the hook gives such a positive case a `to` an hour later."""
    ahead = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    case = SimpleNamespace(query={"from": ahead})
    hooks._api_range(case, stats=True)
    start = datetime.fromisoformat(case.query["from"])
    assert datetime.fromisoformat(case.query["to"]) == start + timedelta(hours=1)
