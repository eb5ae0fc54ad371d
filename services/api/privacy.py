"""Per-tenant privacy settings, kept in `tenants.settings` (jsonb).

    {"ip_mode": "full" | "truncated" | "none", "respect_dnt": bool, "retention_months": int | null}

The writer applies `ip_mode` and `respect_dnt` when it stores a hit; the api's
`retention` command applies `retention_months`. Stored documents hold only what was set;
`effective()` fills in the defaults, so a default can change without rewriting rows.
A change is checked against its contract type (services/api/contracts.py
`SettingsInput`) and written by the tenants repository (services/api/repos/tenants.py),
for the route and the command line alike.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from services.api.contracts import MAX_RETENTION_MONTHS, IpMode, Settings, SettingsInput
from services.api.repos.tenants import TenantRepo
from shared.decoding import field_values
from shared.jsonnum import json_int

IP_MODES: tuple[str, ...] = typing.get_args(IpMode)
DEFAULTS: dict[str, Any] = {"ip_mode": "full", "respect_dnt": True, "retention_months": None}
MESSAGES = {
    "ip_mode": f"must be one of {', '.join(IP_MODES)}",
    "respect_dnt": "must be true or false",
    "retention_months": "must be null (keep everything) or an integer from 1 to"
    f" {MAX_RETENTION_MONTHS}",
}
UNKNOWN = f"unknown setting (known: {', '.join(DEFAULTS)})"


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
    checked, errors = field_values(SettingsInput, update, MESSAGES, UNKNOWN)
    months = checked.get("retention_months")
    if months is not None:  # 6.0 is stored as 6
        checked["retention_months"] = json_int(months, 1, MAX_RETENTION_MONTHS)
        if checked["retention_months"] is None:
            errors["retention_months"] = MESSAGES["retention_months"]
    if errors:
        raise SettingsInvalid(errors)
    return checked


def merged(stored: Mapping[str, Any] | None, update: Mapping[str, Any]) -> dict[str, Any]:
    """The stored document after a validated update (only known keys are kept)."""
    doc = {k: v for k, v in (stored or {}).items() if k in DEFAULTS}
    doc.update(update)
    return doc


def _in_force(stored: Mapping[str, Any] | None) -> Settings | None:
    return None if stored is None else Settings(**effective(stored))


async def settings_of(tenants: TenantRepo, tenant: str) -> Settings | None:
    """The tenant's settings in force; None when there is no such tenant."""
    return _in_force(await tenants.settings(tenant))


async def change(tenants: TenantRepo, tenant: str, update: Mapping[str, Any]) -> Settings | None:
    """Apply a validated update (under the tenant's row lock); the settings in force
    after it, or None when there is no such tenant."""
    return _in_force(await tenants.change_settings(tenant, lambda stored: merged(stored, update)))
