"""Alert rules: the model, the shorthand condition parser, validation with field errors,
annotation templates and the YAML loader."""

from services.alerting.rules.model import Matcher, Rule, fingerprint
from services.alerting.rules.validate import RuleError, rule_from_doc

__all__ = ["Matcher", "Rule", "RuleError", "fingerprint", "rule_from_doc"]
