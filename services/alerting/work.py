"""What an evaluation or an action hands to the engine's commit (`Pending`: an alert
before and after, its changes, the rule), and which silence holds an alert's labels:
shared by the engine (evaluator.py) and the alerts received from outside (external.py),
in a module of their own so that neither imports the other."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.alerting.engine.state import Alert, Change
from services.alerting.rules.model import Rule


@dataclass(slots=True)
class Pending:
    before: Alert | None
    after: Alert
    changes: list[Change]
    rule: Rule
    trace: dict[str, str] | None = None


def silence_for(
    silences: Iterable[Mapping[str, Any]], tenant: str, labels: Mapping[str, str]
) -> str | None:
    """The first active silence of `tenant` whose matchers all match `labels`."""
    for silence in silences:
        if silence["tenant"] != tenant:
            continue
        if all(m.matches(labels) for m in silence["matchers"]):
            return str(silence["id"])
    return None
