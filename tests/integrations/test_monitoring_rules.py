"""monitoring/ with the real promtool: the rules are valid, every alert is unit-tested,
and the rules, the PrometheusRule and the chart's copy are one set of alerts that
names only metrics kstrata really exports.

The operator's live /metrics output and the API server's webhook metrics are
checked against a running cluster in test_monitoring_live.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.gotools import CHART
from support.integration_tools import FOREIGN_METRICS, MONITORING, exported_series

RULES = MONITORING / "kstrata.rules.yaml"
RULE_TESTS = MONITORING / "tests" / "kstrata.rules.test.yaml"


def promtool_run(promtool: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(promtool), *args], input=stdin, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool: Path) -> None:
    output = promtool_run(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    output = promtool_run(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in rules()}
    assert fired == alerts, "an alert never shown firing"
    assert quiet == alerts, "an alert never shown staying quiet"


def test_the_rules_name_only_metrics_kstrata_exports() -> None:
    exported = exported_series()
    assert "kstrata_reconcile_total" in exported
    used = set()
    for rule in rules():
        used.update(re.findall(r"\b(?:kstrata|apiserver)_[a-z_]+\b", rule["expr"]))
    unknown = used - exported - FOREIGN_METRICS
    assert not unknown, f"not exported by kstrata.metrics: {sorted(unknown)}"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize(
    "copy",
    [MONITORING / "prometheusrule.yaml", CHART / "files" / "kstrata.rules.yaml"],
    ids=["prometheusrule", "chart"],
)
def test_the_prometheusrule_and_the_chart_carry_the_same_alerts(copy: Path) -> None:
    document = yaml.safe_load(copy.read_text())
    groups = document["spec"] if document.get("kind") == "PrometheusRule" else document
    assert groups == yaml.safe_load(RULES.read_text())
