"""The field form of label matchers → `Matcher`s, with an error per path.

Shared by a rule's own `matchers` (rules/validate.py), an expression's selectors
(rules/exprdoc.py) and silences: a module of its own, so the expression parser does not
import the rule validator that imports it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.alerting.contracts import MatcherInput
from services.alerting.contracts_rules import MAX_VALUE, Matchers
from services.alerting.rules.matcher import Matcher
from services.alerting.rules.regex import regex_problem
from shared.decoding import located

MATCHERS_PROBLEM = "must be a list of {label, op, value} or an object of label values"


def matchers_from_doc(value: Any, errors: dict[str, str]) -> tuple[Matcher, ...]:
    """The matchers of a list of {label, op, value} or an object of label values (the
    `Matchers` contract), each value bounded and each regex one RE2 runs; else errors."""
    if value is None:
        return ()
    try:
        given = msgspec.convert(value, Matchers)
    except msgspec.ValidationError as exc:
        where, problem = located(str(exc))
        errors["matchers" + where] = problem if where else MATCHERS_PROBLEM
        return ()
    return check_matchers(matchers_of(given), "matchers", errors)


def matchers_of(given: list[MatcherInput] | dict[str, str] | None) -> tuple[Matcher, ...]:
    if isinstance(given, dict):  # {"service": "api"} means service="api"
        return tuple(Matcher(label, "=", value) for label, value in given.items())
    return tuple(Matcher(m.label, m.op, m.value) for m in given or ())


def check_matchers(
    matchers: tuple[Matcher, ...], field: str, errors: dict[str, str]
) -> tuple[Matcher, ...]:
    """`matchers` if each value is bounded and each regex one RE2 runs; else errors."""
    for i, matcher in enumerate(matchers):
        where = f"{field}.{i}.value" if field == "matchers" else field
        problem = None
        if len(matcher.value) > MAX_VALUE:
            problem = f"must be at most {MAX_VALUE} characters"
        elif matcher.op in ("=~", "!~"):
            problem = regex_problem(matcher.value)
        if problem:
            errors[where] = problem if field == "matchers" else f"{matcher.label}: {problem}"
    return matchers
