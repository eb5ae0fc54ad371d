"""Numbers read from JSON bodies, as JSON Schema reads them.

JSON has one number type: `65` and `65.0` are the same number, and JSON Schema's
`integer` admits both (a number whose fractional part is zero). Routes that want an
integer take either and store a Python int, so a client that writes whole numbers as
floats (many JSON encoders, JavaScript's among them) is not refused.
"""

from __future__ import annotations

import math
from typing import Any


def json_int(value: Any, low: int, high: int) -> int | None:
    """`value` as an int when it is a whole number in [low, high]; None otherwise
    (booleans, fractions, non-finite floats, other types, out of range)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        return None
    return value
