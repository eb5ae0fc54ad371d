"""Names and label values as the decoders turn them into the sample contract's rules.

OTLP names are free text (`http.server.duration`), so they are sanitised the way
Prometheus's OTLP translator does: every character outside the allowed set becomes `_`,
a leading digit gets a prefix. remote_write names are Prometheus names already, so they
are checked, not changed. Both run per point, so results are cached; the caches are
bounded (cleared when full; only names within the length limits are kept), since names
come from tenants.
"""

from __future__ import annotations

import re

from shared.samples import (
    MAX_LABEL_NAME_LEN,
    MAX_LABEL_VALUE_LEN,
    MAX_NAME_LEN,
    valid_label_name,
    valid_metric_name,
)

_CACHE_SIZE = 8192
_NOT_METRIC_CHAR = re.compile(r"[^a-zA-Z0-9_:]")
_NOT_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9_]")

_metric_names: dict[str, str | None] = {}
_label_names: dict[str, str | None] = {}
_valid_labels: set[str] = set()


def _remember(cache: dict[str, str | None], key: str, value: str | None) -> str | None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def otlp_metric_name(name: str) -> str | None:
    """`http.server.duration` -> `http_server_duration`; None if it can't be a name."""
    if len(name) > MAX_NAME_LEN:  # checked first: an over-long name is never cached
        return None
    try:
        return _metric_names[name]
    except KeyError:
        return _remember(_metric_names, name, _new_metric_name(name))


def _new_metric_name(name: str) -> str | None:
    out = _NOT_METRIC_CHAR.sub("_", name)
    if out[:1].isdigit():
        out = "_" + out
    return out if out and len(out) <= MAX_NAME_LEN else None


def otlp_label_name(key: str) -> str | None:
    """`http.route` -> `http_route`, `2xx` -> `key_2xx`, `__x` -> `key__x` (`__` is
    reserved); None if empty or too long."""
    if len(key) > MAX_LABEL_NAME_LEN:
        return None
    try:
        return _label_names[key]
    except KeyError:
        return _remember(_label_names, key, _new_label_name(key))


def _new_label_name(key: str) -> str | None:
    out = _NOT_LABEL_CHAR.sub("_", key)
    if out[:1].isdigit():
        out = "key_" + out
    elif out.startswith("__"):
        out = "key" + out
    ok = out and len(out) <= MAX_LABEL_NAME_LEN and valid_label_name(out)
    return out if ok else None


def label_name_ok(name: str) -> bool:
    """A remote_write label name follows the contract's rules (cached when it does)."""
    if name in _valid_labels:
        return True
    if not valid_label_name(name):
        return False
    if len(_valid_labels) >= _CACHE_SIZE:
        _valid_labels.clear()
    _valid_labels.add(name)
    return True


def metric_name_ok(name: str) -> bool:
    return valid_metric_name(name)


def label_value_problem(value: str) -> str | None:
    if len(value) > MAX_LABEL_VALUE_LEN:
        return f"label value longer than {MAX_LABEL_VALUE_LEN}"
    if "\x00" in value:
        return "label value contains NUL"
    return None


def format_float(value: float) -> str:
    """A bucket bound or quantile as a label value: `1`, `0.25`, `1e-07`, `+Inf`."""
    if value == float("inf"):
        return "+Inf"
    if value == float("-inf"):
        return "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
