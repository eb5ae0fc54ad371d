"""Tenant-supplied regular expressions (`=~`, `!~` matchers of rules and silences), run by
RE2: matching takes time linear in the label value whatever the pattern, so no tenant can
stall the event loop with a catastrophic pattern (`(a+)+` against `aaa…!` takes Python's
backtracking `re` minutes). As in Prometheus and Alertmanager, a pattern must match the
whole value, and what RE2 cannot run (backreferences, lookarounds) is refused up front.
"""

from __future__ import annotations

from functools import lru_cache

import re2

MAX_PATTERN = 1024  # characters
_OPTIONS = re2.Options()
_OPTIONS.never_capture = True  # only "does it match" is asked: faster
_OPTIONS.log_errors = False  # a refused pattern is answered with a 400, not logged by RE2


class RegexError(ValueError):
    pass


@lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> re2._Regexp:
    """The compiled pattern, once per distinct pattern (rules and silences are rebuilt
    from the database, so the cache is keyed by the text, not the object)."""
    if len(pattern) > MAX_PATTERN:
        raise RegexError(f"at most {MAX_PATTERN} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"not a valid RE2 regular expression: {reason}") from None


def full_match(pattern: str, value: str) -> bool:
    """Whether `pattern` matches the whole of `value`. Matching UTF-8 bytes takes the
    wrapper's fast path (no per-match offset translation)."""
    return compile_regex(pattern).fullmatch(value.encode("utf-8", "surrogatepass")) is not None


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be used, or None."""
    try:
        compile_regex(pattern)
    except RegexError as exc:
        return str(exc)
    return None
