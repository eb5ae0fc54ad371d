"""The api's Prometheus metrics (`belfry_api_*`); HTTP metrics come from shared.httpobs."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EMAILS_REGISTERED = Counter("belfry_api_emails_registered", "Emails registered")
CLICK_URLS_SIGNED = Counter("belfry_api_click_urls_signed", "Click URLs signed")
AUTH_REFUSED = Counter(
    "belfry_api_auth_refused",
    "Requests refused: no or bad key (unauthenticated), or a key of another tenant",
    ["reason"],
)
STATS_SECONDS = Histogram(
    "belfry_api_stats_query_seconds",
    "Time to compute one stats answer (all its queries)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EXPORT_ROWS = Counter("belfry_api_export_rows", "Event rows exported", ["format"])
EXPORTS = Counter(
    "belfry_api_exports", "Exports by format and outcome (complete, aborted)", ["format", "outcome"]
)
