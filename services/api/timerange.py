"""Query-string time ranges and buckets for stats and exports.

`from` / `to`: RFC 3339 with an offset (`2026-01-31T12:00:00Z`), a date (`2026-01-31`,
midnight UTC) or epoch seconds; the range is [from, to). `bucket`: `hour` or `day`
(UTC), by default `hour` for ranges up to two days and `day` beyond.

Instants must lie in [EARLIEST, LATEST]: Python's datetime ends at years 1 and 9999, and a
bound near either end would overflow once shifted to UTC, by the default span or by a
bucket step (a 500); so such a bound is a field error (a 400) naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shared.ids import valid_email_id

BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
DEFAULT_SPAN = timedelta(days=30)
MAX_BUCKETS = 3000  # a year of hours would be 8760: too many points for one chart
# A day inside datetime's range at both ends: room for one bucket step past a bound.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_RANGE = f"must lie between {EARLIEST.date()} and {LATEST.date()} (UTC)"


@dataclass(frozen=True, slots=True)
class Scope:
    start: datetime | None
    end: datetime | None
    bucket: str
    email_id: str | None


def parse_instant(raw: str) -> datetime:
    raw = raw.strip()
    try:
        if raw.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(raw), UTC)
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except (OverflowError, OSError):
        raise ValueError(_RANGE) from None
    except ValueError:
        raise ValueError("must be RFC 3339 (with offset), YYYY-MM-DD or epoch seconds") from None
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-01-31T12:00:00Z")
    try:
        value = value.astimezone(UTC)  # 0001-01-01T00:00+01:00 is before year 1 in UTC
    except OverflowError:
        raise ValueError(_RANGE) from None
    if not EARLIEST <= value <= LATEST:
        raise ValueError(_RANGE)
    return value


def floor(at: datetime, bucket: str) -> datetime:
    at = at.astimezone(UTC)
    if bucket == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def bucket_starts(start: datetime, end: datetime, bucket: str) -> list[datetime]:
    """The start of every bucket overlapping [start, end)."""
    step, at, out = BUCKETS[bucket], floor(start, bucket), []
    while at < end:
        out.append(at)
        at += step
    return out


def parse_bounds(
    query: Mapping[str, str],
) -> tuple[datetime | None, datetime | None, dict[str, str]]:
    """The query's `from` and `to` instants (None where not given), and field errors."""
    errors: dict[str, str] = {}
    bounds: dict[str, datetime | None] = {"from": None, "to": None}
    for name in bounds:
        raw = query.get(name)
        if raw:
            try:
                bounds[name] = parse_instant(raw)
            except ValueError as exc:
                errors[name] = str(exc)
    return bounds["from"], bounds["to"], errors


def parse_scope(
    query: Mapping[str, str], now: datetime, *, default_span: timedelta | None = DEFAULT_SPAN
) -> tuple[Scope | None, dict[str, str]]:
    """The scope named by a query string, or field errors. Without `default_span` a
    missing bound stays open (exports); with it the range defaults to the last 30 days."""
    start, end, errors = parse_bounds(query)
    if default_span is not None and not errors:
        end = end or now
        if start is None and end - EARLIEST < default_span:
            errors["to"] = f"{_RANGE}, and so must from ({default_span.days} days before)"
        else:
            start = start or end - default_span
    if start is not None and end is not None and start >= end:
        errors["to"] = "must be after from"
    email_id = query.get("email_id") or None
    if email_id is not None and not valid_email_id(email_id):
        errors["email_id"] = "is not a valid email id"
    bucket = query.get("bucket") or ""
    if bucket and bucket not in BUCKETS:
        errors["bucket"] = f"must be one of {', '.join(BUCKETS)}"
    if errors:
        return None, errors
    if not bucket:
        span = (end - start) if start and end else DEFAULT_SPAN
        bucket = "hour" if span <= timedelta(days=2) else "day"
    if default_span is not None and start is not None and end is not None:
        count = (floor(end, bucket) - floor(start, bucket)) / BUCKETS[bucket]
        if count > MAX_BUCKETS:
            return None, {"bucket": f"range holds more than {MAX_BUCKETS} {bucket}s; use day"}
    return Scope(start, end, bucket, email_id), {}
