"""Helpers the deployment tests share: paths, the repository's scripts, PromQL names."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = ROOT / "k8s"

# Service → default port (the settings' defaults; Deployments and compose must agree).
PORTS = {"ingest": 8080, "writer": 8081, "alerting": 8082, "api": 8083}


def load_script(name: str) -> ModuleType:
    """Import `scripts/<name>.py` (scripts/ is not a package)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"belfry_scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- metric names in PromQL -------------------------------------------------------------

_KEYWORDS = frozenset(
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
        "and", "or", "unless", "offset", "inf", "nan", "atan2",
    }
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(\s*\()?")
_NUMBER_LIKE = re.compile(r"^\d")


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    Strings, label matchers `{…}`, ranges `[…]`, grouping label lists (`by (…)`, `on (…)`)
    and Grafana variables are removed first (so `sum by (x) (…)` reads as a call); what
    remains that is an identifier not called as a function and not a keyword is a metric
    name. Enough for the queries we write; test_promql_metric_extraction holds it to that."""
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("1m", text)
    text = _RANGE.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _GROUPING.sub(" ", text)  # `sum by (x) (…)` → `sum (…)`: a call
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS or _NUMBER_LIKE.match(name):
            continue
        names.add(name)
    return names
