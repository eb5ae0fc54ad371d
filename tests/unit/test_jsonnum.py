"""shared.jsonnum: whole numbers as JSON Schema's `integer` reads them (65 and 65.0)."""

from __future__ import annotations

import math

import pytest

from shared.jsonnum import json_int


@pytest.mark.parametrize(("value", "expected"), [(65, 65), (65.0, 65), (1, 1), (1000.0, 1000)])
def test_whole_numbers_in_range_are_ints(value: object, expected: int) -> None:
    result = json_int(value, 1, 1000)
    assert result == expected and type(result) is int


@pytest.mark.parametrize(
    "value", [True, False, 65.5, 0, 1001, 1e300, math.inf, math.nan, "65", None, [65]]
)
def test_everything_else_is_refused(value: object) -> None:
    assert json_int(value, 1, 1000) is None
