"""The alert rules: valid for promtool, and each one proven to fire and to stay silent."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanaria import api
from kanaria.monitoring import alerts, dashboard
from kanaria.monitoring.render import MANIFESTS, RULES_FILE, to_yaml
from tests.support.procs import require_binary

ROOT = Path(__file__).resolve().parents[3]
UNIT_TESTS = Path(__file__).with_name("rules_test.yaml")

pytestmark = pytest.mark.prometheus


def _promtool() -> str:
    return require_binary("promtool", "checks and unit-tests the Prometheus alert rules")


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules_accepts_the_shipped_rules_and_their_templates() -> None:
    result = _run([_promtool(), "check", "rules", str(ROOT / MANIFESTS / RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    # promtool compares annotations verbatim; the logic under test is expr/for/labels,
    # and the annotation templates are validated by `promtool check rules` above.
    groups = alerts.rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(to_yaml(groups), encoding="utf-8")
    (tmp_path / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text(encoding="utf-8"))
    result = _run([_promtool(), "test", "rules", UNIT_TESTS.name], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fail_when_a_rule_is_broken(tmp_path: Path) -> None:
    """The unit tests can fail: a rule with a threshold nobody reaches breaks them."""
    groups = alerts.rule_groups()
    for rule in groups["groups"][0]["rules"]:
        rule.pop("annotations")
        if rule["alert"] == "KanariaInputDrift":
            rule["expr"] = rule["expr"].replace(str(alerts.DRIFT_PSI), "10")
    (tmp_path / "rules.yaml").write_text(to_yaml(groups), encoding="utf-8")
    (tmp_path / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text(encoding="utf-8"))
    result = _run([_promtool(), "test", "rules", UNIT_TESTS.name], cwd=tmp_path)
    assert result.returncode != 0
    assert "KanariaInputDrift" in result.stdout + result.stderr


def _cases() -> list[dict[str, Any]]:
    doc = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    return [case for test in doc["tests"] for case in test.get("alert_rule_test", [])]


@pytest.mark.parametrize("alert", [a.name for a in alerts.ALERTS])
def test_every_alert_has_a_firing_and_a_silent_unit_test(alert: str) -> None:
    cases = [c for c in _cases() if c["alertname"] == alert]
    assert any(c.get("exp_alerts") for c in cases), f"{alert}: no case where it fires"
    assert any(not c.get("exp_alerts") for c in cases), f"{alert}: no case where it is silent"


def test_label_values_in_rules_are_the_api_enum_values() -> None:
    assert api.Phase.Progressing == alerts.PHASE_PROGRESSING
    assert api.Phase.Promoting == alerts.PHASE_PROMOTING
    assert api.Phase.RolledBack == alerts.PHASE_ROLLED_BACK
    assert api.Verdict.Successful == alerts.VERDICT_SUCCESSFUL
    assert api.Verdict.Inconclusive == alerts.VERDICT_INCONCLUSIVE


def test_every_alert_carries_severity_summary_and_runbook() -> None:
    names = [a.name for a in alerts.ALERTS]
    assert len(names) == len(set(names))
    for alert in alerts.ALERTS:
        rule = alert.rule()
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert len(rule["annotations"]["runbook"]) > 80, f"{alert.name}: runbook too thin"


def test_every_dashboard_query_parses_for_promtool(tmp_path: Path) -> None:
    """A fast parse check of the panel queries (the acceptance test also runs them)."""
    queries = dashboard.all_exprs()
    rules = [
        {"record": f"kanaria:panel_{i}", "expr": dashboard.resolve(expr)}
        for i, expr in enumerate(queries)
    ]
    path = tmp_path / "panels.yaml"
    path.write_text(to_yaml({"groups": [{"name": "panels", "rules": rules}]}))
    result = _run([_promtool(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
