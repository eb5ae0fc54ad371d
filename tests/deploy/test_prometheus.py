"""The Prometheus config and rules pass promtool, and the rules' unit tests show the alerts
firing when they should and not before (error rate > 5 % for 5 m, p95 > 1 s, service down,
backlog, dead letters, spool growth, notification failures)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.support import INFRA
from tests.support.tools import promtool

PROM = INFRA / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_config() -> None:
    result = run("check", "config", PROM / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # The config's rule_files glob resolves to our rules (relative to the config file).
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    assert RULES
    result = run("check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = run("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    # The same unit tests against a rule pack whose error-rate threshold is 10 % must fail:
    # they pin the 5 % the issue asks for, not just "some alert".
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    rules = (PROM / "rules" / "belfry.yml").read_text()
    assert rules.count("> 0.05") == 1
    (tmp_path / "rules" / "belfry.yml").write_text(rules.replace("> 0.05", "> 0.10"))
    for test in RULE_TESTS:
        shutil.copy(test, tmp_path / "tests" / test.name)
    result = run("test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert result.returncode != 0
    assert "BelfryHighErrorRate" in result.stdout + result.stderr


def test_every_alert_has_severity_and_a_runbook_section_that_exists() -> None:
    runbook = (INFRA.parent / "docs" / "runbook.md").read_text()
    anchors = {
        "#" + line.lstrip("#").strip().lower().replace(" ", "-").replace("'", "")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
                link = rule["annotations"]["runbook"]
                assert link.startswith("docs/runbook.md#"), rule["alert"]
                assert link.removeprefix("docs/runbook.md") in anchors, (rule["alert"], link)
