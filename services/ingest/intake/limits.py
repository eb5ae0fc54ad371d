"""Per-tenant intake limits, so one tenant can't flood the others: a sample rate, a series
count (cardinality), and the shape of each series (labels, lengths).

`TenantLimits.admit(tenant, samples)` says which samples may be published, counts the
others per reason, and says whether the sender should slow down:

1. Shape: a sample whose series has more than `max_labels` labels, a label name or value
   or a metric name over its length is refused (`too_many_labels`, `label_too_long`,
   `name_too_long`): non-retryable (OTLP partial_success, remote_write 400).
2. Rate: a token bucket per tenant, `samples_per_second` refilled, `burst_samples` deep.
   A request is taken whole or not at all (`rate_limited`, nothing accepted,
   `retry_after` > 0): retryable (OTLP and remote_write 429 with Retry-After), and a
   partial accept would make the sender's retry duplicate what was taken. A request
   larger than the bucket passes when the bucket is full and leaves it in debt, so a big
   request is slowed, never refused forever.
3. Cardinality: at most `max_series` series per tenant; a series unseen for
   `series_idle_seconds` no longer counts (so a restarted app's old `instance` series
   free their room). A sample of a known series always passes; one of a new series
   past the limit is refused (`series_limit`, non-retryable: retrying won't free room).

State is in memory, per ingest process: with N replicas the effective limits are N times
these (by design: ingest shares nothing; sticky routing by token keeps it close). The
number of tenants tracked is bounded too (least recently seen forgotten first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from services.ingest.intake.result import TOO_MANY_LABELS, DecodeResult
from shared.samples import Sample

RATE_LIMITED = "rate_limited"
SERIES_LIMIT = "series_limit"
LABEL_TOO_LONG = "label_too_long"
NAME_TOO_LONG = "name_too_long"
# Label sets TenantLimits remembers (holding their dicts): at most this many, this much text.
_MAX_KNOWN = 50_000
_MAX_KNOWN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LimitSettings:
    samples_per_second: float = 20_000.0
    burst_samples: int = 200_000
    max_series: int = 20_000
    series_idle_seconds: float = 1800.0
    max_labels: int = 30
    max_label_name_len: int = 128
    max_label_value_len: int = 1024
    max_name_len: int = 200
    max_tenants: int = 10_000

    def __post_init__(self) -> None:
        # From the environment, a 0 would divide by zero (rate) or refuse everything.
        for name in self.__dataclass_fields__:
            if not getattr(self, name) > 0:
                raise ValueError(f"intake limit {name} must be positive")


@dataclass(slots=True)
class Admission(DecodeResult):
    """`samples` = the accepted ones; `rejected`/`reasons` = the refused ones."""

    retry_after: float = 0.0  # > 0: throttled, nothing accepted; seconds to wait

    @property
    def throttled(self) -> bool:
        return self.retry_after > 0


class _Tenant:
    __slots__ = ("series", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        # series fingerprint -> last seen; ordered from least to most recently seen.
        self.series: OrderedDict[int, float] = OrderedDict()


class TenantLimits:
    def __init__(
        self, settings: LimitSettings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or LimitSettings()
        self.clock = clock
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()
        # id(labels) -> (the labels, shape verdict, hash of the label set). The decoders
        # share one labels dict per series across requests (their caches), so this makes
        # the checks once per series, not per sample. Holding the dict keeps its id from
        # being reused; bounded (emptied when full).
        self._known: dict[int, tuple[dict[str, str], tuple[str, str] | None, int]] = {}
        self._known_bytes = 0

    def series_count(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return len(state.series) if state else 0

    def admit(self, tenant: str, samples: list[Sample]) -> Admission:
        now = self.clock()
        out = Admission()
        shaped = self._check_shape(samples, out)
        if not shaped:
            return out
        state = self._tenant(tenant, now)
        wait = self._take(state, len(shaped), now)
        if wait > 0:
            out.retry_after = wait
            out.reject(
                RATE_LIMITED, f"over {self.settings.samples_per_second:g} samples/s", len(shaped)
            )
            return out
        self._count_series(state, shaped, now, out)
        return out

    def _tenant(self, tenant: str, now: float) -> _Tenant:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant(float(self.settings.burst_samples), now)
            if len(self._tenants) > self.settings.max_tenants:
                self._tenants.popitem(last=False)
        else:
            self._tenants.move_to_end(tenant)
        return state

    def _take(self, state: _Tenant, need: int, now: float) -> float:
        """Take `need` tokens, or return the seconds until they'd be there (all or none)."""
        rate, burst = self.settings.samples_per_second, self.settings.burst_samples
        state.tokens = min(float(burst), state.tokens + (now - state.updated) * rate)
        state.updated = now
        threshold = min(need, burst)
        if state.tokens < threshold:
            return max((threshold - state.tokens) / rate, 1e-3)
        state.tokens -= need
        return 0.0

    def _check_shape(self, samples: list[Sample], out: Admission) -> list[Sample]:
        max_name_len = self.settings.max_name_len
        known, learn = self._known, self._learn
        shaped = []
        for sample in samples:
            if len(sample.name) > max_name_len:
                out.reject(NAME_TOO_LONG, f"{sample.name[:60]}… over {max_name_len}")
                continue
            labels = sample.labels
            entry = known.get(id(labels))
            if entry is None or entry[0] is not labels:
                entry = learn(labels)
            verdict = entry[1]
            if verdict is None:
                shaped.append(sample)
            else:
                out.reject(verdict[0], f"{sample.name[:60]}: {verdict[1]}")
        return shaped

    def _learn(self, labels: dict[str, str]) -> tuple[dict[str, str], tuple[str, str] | None, int]:
        # Bounded in entries and in the text held (a tenant's labels may be long).
        size = 64 * len(labels) + sum(map(len, labels)) + sum(map(len, labels.values()))
        if len(self._known) >= _MAX_KNOWN or self._known_bytes + size > _MAX_KNOWN_BYTES:
            self._known.clear()
            self._known_bytes = 0
        entry = (labels, self._label_problem(labels), hash(frozenset(labels.items())))
        self._known[id(labels)] = entry
        self._known_bytes += size
        return entry

    def _label_problem(self, labels: dict[str, str]) -> tuple[str, str] | None:
        limits = self.settings
        if len(labels) > limits.max_labels:
            return TOO_MANY_LABELS, f"{len(labels)} labels, over {limits.max_labels}"
        if not labels or (
            max(map(len, labels)) <= limits.max_label_name_len
            and max(map(len, labels.values())) <= limits.max_label_value_len
        ):
            return None  # the usual case, in C; below: which label, for the message
        for name, value in labels.items():
            if len(name) > limits.max_label_name_len:
                return LABEL_TOO_LONG, f"label name {name[:40]}… over {limits.max_label_name_len}"
            if len(value) > limits.max_label_value_len:
                return LABEL_TOO_LONG, f"label {name} value over {limits.max_label_value_len}"
        return None

    def _count_series(
        self, state: _Tenant, samples: list[Sample], now: float, out: Admission
    ) -> None:
        series = state.series
        horizon = now - self.settings.series_idle_seconds
        while series:
            oldest = next(iter(series))
            if series[oldest] >= horizon:
                break
            del series[oldest]
        room = self.settings.max_series
        accepted = out.samples
        known = self._known
        for sample in samples:
            # Every sample here passed _check_shape, which left its labels in `known`
            # (unless it was emptied meanwhile: then hash them again).
            entry = known.get(id(sample.labels))
            if entry is None or entry[0] is not sample.labels:
                entry = self._learn(sample.labels)
            fingerprint = hash((sample.name, entry[2]))
            if fingerprint in series:
                series.move_to_end(fingerprint)
            elif len(series) >= room:
                out.reject(SERIES_LIMIT, f"{sample.name[:60]}: over {room} series")
                continue
            series[fingerprint] = now
            accepted.append(sample)
