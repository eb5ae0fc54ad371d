"""Rules and channels from YAML files, loaded at start (ALERTING_RULES_FILE,
ALERTING_CHANNELS_FILE).

Rules file: `rules: [{name, condition | metric/op/threshold, ..., tenant?}]`; channels file:
`channels: [{name, type, config: {...}, enabled?, tenant?}]`. The tenant defaults to
`belfry` (Belfry watching itself). Entries are upserted by (tenant, name), so loading a
file again updates rather than duplicates; rules created through the API stay. Every
entry is validated first, and one bad entry stops start-up with its field errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.alerting.notify.config import validate_channel_config
from services.alerting.rules.model import Rule
from services.alerting.rules.validate import CHANNEL_NAME, RuleError, rule_from_doc
from shared.ids import valid_tenant

DEFAULT_TENANT = "belfry"


class FileError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Channel:
    tenant: str
    name: str
    type: str
    config: dict[str, Any]
    enabled: bool = True


def _entries(path: str, key: str) -> list[Any]:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise FileError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FileError(f"{path}: not valid YAML: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get(key, []), list):
        raise FileError(f"{path}: expected a mapping with a list under {key!r}")
    return list(doc.get(key) or [])


def _mappings(path: str, key: str, noun: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Each entry under `key` as (index, tenant, a copy of the entry without its tenant);
    FileError at the first that is not a mapping or names no valid tenant."""
    for index, entry in enumerate(_entries(path, key)):
        if not isinstance(entry, dict):
            raise FileError(f"{path}: {noun} {index} is not a mapping")
        entry = dict(entry)
        tenant = entry.pop("tenant", DEFAULT_TENANT)
        if not isinstance(tenant, str) or not valid_tenant(tenant):
            raise FileError(f"{path}: entry {index}: tenant is not a valid tenant id")
        yield index, tenant, entry


def file_rule_id(tenant: str, name: str) -> str:
    """Stable id of a file rule, so every load of the file names it the same."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"belfry-rule:{tenant}/{name}"))


def load_rules_file(path: str) -> list[Rule]:
    rules = []
    for index, tenant, entry in _mappings(path, "rules", "rule"):
        name = entry.get("name") if isinstance(entry.get("name"), str) else ""
        try:
            rules.append(
                rule_from_doc(entry, tenant=tenant, rule_id=file_rule_id(tenant, str(name)))
            )
        except RuleError as exc:
            raise FileError(f"{path}: rule {index} ({name or 'unnamed'}): {exc}") from None
    return rules


def load_channels_file(path: str) -> list[Channel]:
    channels = []
    for index, tenant, entry in _mappings(path, "channels", "channel"):
        name, kind, config = entry.get("name"), entry.get("type"), entry.get("config", {})
        enabled = entry.get("enabled", True)
        if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
            raise FileError(f"{path}: channel {index}: name must match {CHANNEL_NAME.pattern}")
        errors = validate_channel_config(str(kind), config)
        if not isinstance(enabled, bool):
            errors["enabled"] = "must be true or false"
        if errors:
            detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
            raise FileError(f"{path}: channel {name}: {detail}")
        channels.append(Channel(tenant, name, str(kind), dict(config), enabled))
    return channels
