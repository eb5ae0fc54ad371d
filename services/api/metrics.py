"""The api's Prometheus metrics (`belfry_api_*`), one set per app on the app's own registry
(shared/prom.py); HTTP metrics come from shared.httpobs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ApiMetrics:
    """Built once by `create_app` and kept under `keys.METRICS`; label children that every
    refusal uses are bound here, once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.emails_registered = Counter(
            "belfry_api_emails_registered", "Emails registered", registry=registry
        )
        self.click_urls_signed = Counter(
            "belfry_api_click_urls_signed", "Click URLs signed", registry=registry
        )
        self.auth_refused = Counter(
            "belfry_api_auth_refused",
            "Requests refused: no or bad key (unauthenticated), or a key of another tenant",
            ["reason"],
            registry=registry,
        )
        self.unauthenticated = self.auth_refused.labels("unauthenticated")
        self.other_tenant = self.auth_refused.labels("other_tenant")
        self.stats_seconds = Histogram(
            "belfry_api_stats_query_seconds",
            "Time to compute one stats answer (all its queries)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.export_rows = Counter(
            "belfry_api_export_rows", "Event rows exported", ["format"], registry=registry
        )
        self.exports = Counter(
            "belfry_api_exports",
            "Exports by format and outcome (complete, aborted)",
            ["format", "outcome"],
            registry=registry,
        )
