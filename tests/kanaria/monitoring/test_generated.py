"""The generated monitoring pack: up to date, consistent, and naming only exported metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kanaria.monitoring import alerts, dashboard, promql
from kanaria.monitoring.__main__ import main
from kanaria.monitoring.render import (
    CHART_FILES,
    DASHBOARD_FILE,
    MANIFESTS,
    generated_files,
    stale_files,
)

ROOT = Path(__file__).resolve().parents[3]


def _exprs(node: Any) -> Iterator[str]:
    """Every ``expr`` anywhere in a dashboard JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def _shipped_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / MANIFESTS / DASHBOARD_FILE).read_text())
    return loaded


def test_committed_files_match_the_generator() -> None:
    stale = stale_files(ROOT)
    assert not stale, f"regenerate with `python -m kanaria.monitoring`: {stale}"


def test_chart_and_manifests_ship_identical_rules_and_dashboard() -> None:
    files = generated_files()
    for name in (DASHBOARD_FILE, "prometheus-rules.yaml"):
        assert files[MANIFESTS / name] == files[CHART_FILES / name]


def test_check_mode_reports_a_drifted_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kanaria" / "monitoring").mkdir(parents=True)
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / CHART_FILES / DASHBOARD_FILE).write_text("{}")
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert "out of date: helm/kanaria/files/kanaria-dashboard.json" in capsys.readouterr().err


def test_cli_refuses_a_directory_that_is_not_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), "--check"]) == 2
    assert "not the Kanaria repository root" in capsys.readouterr().err


def test_no_dashboard_or_alert_query_names_a_metric_nothing_exports() -> None:
    exprs = list(_exprs(_shipped_dashboard())) + [a.expr for a in alerts.ALERTS]
    assert len(exprs) > 40
    unknown = {e: promql.unknown_metrics(e) for e in exprs if promql.unknown_metrics(e)}
    assert not unknown


def test_the_metric_name_check_can_fail() -> None:
    expr = (
        'sum by (model, version) (rate(kanaria_router_requests_total{code!~"5.."}[5m])) '
        "/ on (model) group_left sum(rate(kanaria_made_up_total[5m] offset 1m)) "
        "and kanaria_router_requests_total_bucket > 0 unless absent(up == 1)"
    )
    assert promql.metric_names_in(expr) == {
        "kanaria_router_requests_total",
        "kanaria_made_up_total",
        "kanaria_router_requests_total_bucket",
        "up",
    }
    # a counter has no _bucket series; only histograms expand
    assert promql.unknown_metrics(expr) == {
        "kanaria_made_up_total",
        "kanaria_router_requests_total_bucket",
    }


def test_dashboard_has_the_rows_the_issue_asks_for() -> None:
    board = _shipped_dashboard()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [
        "Rollouts",
        "Success rate",
        "Latency",
        "Throughput",
        "Shadow agreement",
        "Input drift",
        "Output class mix",
        "Accuracy from feedback",
        "Degree of automation",
        "Software",
    ]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    titles = " ".join(p["title"] for p in panels)
    for needed in ("Phase", "weight", "step", "p50 / p99", "CPU", "memory", "In-flight", "Batch"):
        assert needed in titles
    assert board["uid"] == dashboard.UID


def test_dashboard_queries_only_keep_version_where_panels_are_per_version() -> None:
    for panel, query in dashboard.all_queries():
        has_version = "version" in query.expr
        assert has_version == panel.per_version, f"{panel.title}: {query.expr}"


def test_grafana_configmap_carries_the_sidecar_label_and_the_dashboard() -> None:
    cm = yaml.safe_load((ROOT / MANIFESTS / "grafana-dashboard-configmap.yaml").read_text())
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"][DASHBOARD_FILE]) == _shipped_dashboard()


def test_monitors_cover_router_model_servers_and_operator() -> None:
    docs = list(yaml.safe_load_all((ROOT / MANIFESTS / "monitors.yaml").read_text()))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert kinds == {
        ("ServiceMonitor", "kanaria-operator"),
        ("PodMonitor", "kanaria-router"),
        ("PodMonitor", "kanaria-model-server"),
    }
    components = set()
    for doc in docs:
        endpoints = doc["spec"].get("endpoints") or doc["spec"]["podMetricsEndpoints"]
        for endpoint in endpoints:
            (relabel,) = endpoint["relabelings"]
            assert relabel["targetLabel"] == promql.COMPONENT_LABEL
            components.add(relabel["replacement"])
    assert components == set(promql.COMPONENTS)


def test_cli_reports_an_unwritable_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "kanaria" / "monitoring").mkdir(parents=True)
    (tmp_path / "manifests").write_text("a file where a directory belongs")
    assert main(["--root", str(tmp_path)]) == 1
    assert "cannot write the monitoring files" in capsys.readouterr().err
