"""The api service: tenants and keys, Little Bell-compatible email routes, stats, exports,
the dashboard, privacy settings and retention. See services/api/README.md."""
