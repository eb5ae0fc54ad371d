"""The alerting files compose runs with: the rule pack's channels exist in the channels
file compose loads, and every channel there is valid for its type."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.alerting.files import load_channels_file, load_rules_file
from services.alerting.notify.config import validate_channel_config

ROOT = Path(__file__).resolve().parents[2]


def _alerting_env() -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
    env = compose["services"]["alerting"]["environment"]
    return {k: str(v) for k, v in env.items()}


def test_compose_delivers_the_rule_packs_alerts_to_a_valid_channel() -> None:
    env = _alerting_env()
    in_repo = {
        key: ROOT / env[key].removeprefix("/app/")
        for key in ("ALERTING_RULES_FILE", "ALERTING_CHANNELS_FILE")
    }
    rules = load_rules_file(str(in_repo["ALERTING_RULES_FILE"]))
    channels = load_channels_file(str(in_repo["ALERTING_CHANNELS_FILE"]))
    for channel in channels:
        assert validate_channel_config(channel.type, channel.config) == {}, channel.name
    defined = {c.name for c in channels if c.enabled}
    named = {name for rule in rules for name in rule.channels}
    assert named and named <= defined
