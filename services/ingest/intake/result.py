"""What a decoder gives back: the samples, and what it refused, counted per reason.

A body that can't be read at all raises `IntakeError` (a 400 for both protocols), or one
of its subclasses for a 413 / 415. A body that can be read yields a `DecodeResult`: the
valid samples, plus points refused one by one (a NaN counter, an exponential histogram,
a bad label), which OTLP reports as `partial_success` and remote_write as a 400 after
storing the rest (as Prometheus's own receiver does), and end-of-series signals that are
dropped without being an error (Prometheus staleness markers, OTLP "no recorded value").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.samples import Sample

# Reason codes: stable, short, fit for a Prometheus label of a refusal counter.
NON_FINITE = "non_finite"
BAD_NAME = "bad_name"
BAD_LABEL = "bad_label"
TOO_MANY_LABELS = "too_many_labels"
BAD_TIMESTAMP = "bad_timestamp"
BAD_POINT = "bad_point"
UNSUPPORTED = "unsupported"
TOO_MANY_SAMPLES = "too_many_samples"

_MAX_MESSAGE = 512


class IntakeError(ValueError):
    """The body can't be decoded at all; the message says why (safe to show the sender)."""

    status = 400


class BodyTooLarge(IntakeError):
    status = 413


class UnsupportedMediaType(IntakeError):
    status = 415


@dataclass(slots=True)
class DecodeResult:
    samples: list[Sample] = field(default_factory=list)
    # Points refused (OTLP: data points, as `rejected_data_points` counts them; remote_write:
    # samples), by reason, with the first example of each reason for the message.
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    # Not stored and not an error: staleness markers, "no recorded value", NaN quantiles.
    dropped: int = 0

    def reject(self, reason: str, example: str, count: int = 1) -> None:
        if count <= 0:
            return
        self.rejected += count
        self.reasons[reason] = self.reasons.get(reason, 0) + count
        if reason not in self.examples:
            self.examples[reason] = example[:160]

    @property
    def message(self) -> str:
        """One line for OTLP's `error_message` or remote_write's 400 body; '' if none."""
        if not self.rejected:
            return ""
        parts = [
            f"{count} {reason} (e.g. {self.examples[reason]})"
            for reason, count in sorted(self.reasons.items(), key=lambda kv: -kv[1])
        ]
        return f"{self.rejected} refused: " + "; ".join(parts)[:_MAX_MESSAGE]
