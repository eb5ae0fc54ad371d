"""Annotation templates: `{{ value }}`, `{{ labels.service }}`, `{{ threshold }}`, `{{ rule }}`,
`{{ severity }}` (Prometheus spellings `{{ $value }}`, `{{ $labels.x }}` work too).

Deliberately tiny: placeholders are substituted, nothing is evaluated, so an annotation
written through the API can never run code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(
    r"\{\{\s*\$?([a-zA-Z_][a-zA-Z0-9_]*)(?:\.([a-zA-Z_][a-zA-Z0-9_]*))?\s*\}\}"
)
VARIABLES = ("value", "labels", "threshold", "rule", "severity")


def template_errors(text: str) -> str | None:
    """Why `text` is not a valid template, or None."""
    for match in _PLACEHOLDER.finditer(text):
        name, attr = match[1], match[2]
        if name not in VARIABLES:
            return f"unknown placeholder {match[0]!r} (known: {', '.join(VARIABLES)})"
        if (name == "labels") != (attr is not None):
            return f"bad placeholder {match[0]!r}: use {{{{ labels.<name> }}}}"
    return None


def format_value(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.4g}"


def render(
    text: str,
    *,
    value: float | None,
    labels: Mapping[str, str],
    threshold: float,
    rule: str,
    severity: str,
) -> str:
    simple = {
        "value": format_value(value),
        "threshold": f"{threshold:g}",
        "rule": rule,
        "severity": severity,
    }

    def sub(match: re.Match[str]) -> str:
        if match[1] == "labels":
            return labels.get(match[2] or "", "")
        return simple.get(match[1], "")

    return _PLACEHOLDER.sub(sub, text)
