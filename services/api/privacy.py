"""Per-tenant privacy settings, kept in `tenants.settings` (jsonb).

    {"ip_mode": "full" | "truncated" | "none", "respect_dnt": bool, "retention_months": int | null}

The writer applies `ip_mode` and `respect_dnt` when it stores a hit; the api's
`retention` command applies `retention_months`. Stored documents hold only what was set;
`effective()` fills in the defaults, so a default can change without rewriting rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.jsonnum import json_int

IP_MODES = ("full", "truncated", "none")
DEFAULTS: dict[str, Any] = {"ip_mode": "full", "respect_dnt": True, "retention_months": None}
# Ten years: anything longer is "keep" (null), and a bound keeps date arithmetic sane.
MAX_RETENTION_MONTHS = 120


class SettingsInvalid(ValueError):
    """Field errors of a settings update: field -> what is wrong."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def effective(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings in force: stored values over the defaults (unknown keys dropped)."""
    stored = stored or {}
    return {key: stored.get(key, default) for key, default in DEFAULTS.items()}


def validate_update(update: Any) -> dict[str, Any]:
    """Check a (partial) settings document; returns it, or raises SettingsInvalid."""
    if not isinstance(update, dict):
        raise SettingsInvalid({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    for key in sorted(set(update) - set(DEFAULTS)):
        errors[key] = f"unknown setting (known: {', '.join(DEFAULTS)})"
    if "ip_mode" in update and update["ip_mode"] not in IP_MODES:
        errors["ip_mode"] = f"must be one of {', '.join(IP_MODES)}"
    if "respect_dnt" in update and not isinstance(update["respect_dnt"], bool):
        errors["respect_dnt"] = "must be true or false"
    if "retention_months" in update:
        months = update["retention_months"]
        if months is not None and json_int(months, 1, MAX_RETENTION_MONTHS) is None:
            errors["retention_months"] = (
                f"must be null (keep everything) or an integer from 1 to {MAX_RETENTION_MONTHS}"
            )
    if errors:
        raise SettingsInvalid(errors)
    checked = dict(update)
    if checked.get("retention_months") is not None:  # 6.0 is stored as 6
        checked["retention_months"] = json_int(checked["retention_months"], 1, MAX_RETENTION_MONTHS)
    return checked


def merged(stored: Mapping[str, Any] | None, update: Mapping[str, Any]) -> dict[str, Any]:
    """The stored document after a validated update (only known keys are kept)."""
    doc = {k: v for k, v in (stored or {}).items() if k in DEFAULTS}
    doc.update(update)
    return doc
