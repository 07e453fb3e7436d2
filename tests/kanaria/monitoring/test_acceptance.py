"""Acceptance: every dashboard query and alert expression against a real Prometheus.

The data plane runs for real on 127.0.0.1: three `kanaria serve-model`
processes (stable v1, canary v2, shadow v3, each with a reference profile for
drift) behind `kanaria route` (70/30 split, 100% mirrored to v3, v1 and v2 at a
partial confidence policy with a review webhook), with inference traffic and
delayed-label feedback through the router. The operator's
metrics come from operator_metrics_exporter (a stand-in: the operator itself
needs a cluster). A real Prometheus scrapes all of it every second with the
target labels the PodMonitors set, loads the generated alert rules, and answers
every query: each must parse, and every panel must return data; per-version
panels one series per version.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from kanaria.modelgen import mlp_classifier
from kanaria.monitoring import alerts, dashboard
from kanaria.monitoring.promql import COMPONENT_LABEL, MODEL_SERVER, OPERATOR, ROUTER
from kanaria.monitoring.render import DASHBOARD_FILE, MANIFESTS, RULES_FILE
from tests.support import procs

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
MODEL = "fraud"
VERSIONS = {"v1": 0, "v2": 1, "v3": 2}
"""Version -> model seed: different seeds are different models (the shadow disagrees)."""
FEATURES = 8
MAX_REQUESTS = 3000
PACE_S = 0.02
"""Seconds between two requests: tens per second, over every scrape."""


@dataclass
class Stack:
    prometheus: str
    router: str
    traffic: Traffic


def _query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=30)
    body: dict[str, Any] = response.json()
    return body


def _scrape_config(router: str, servers: list[str], operator: str) -> dict[str, Any]:
    def job(name: str, targets: list[str], component: str) -> dict[str, Any]:
        return {
            "job_name": name,
            "static_configs": [{"targets": targets, "labels": {COMPONENT_LABEL: component}}],
        }

    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / MANIFESTS / RULES_FILE)],
        "scrape_configs": [
            job("kanaria-router", [router], ROUTER),
            job("kanaria-model-server", servers, MODEL_SERVER),
            job("kanaria-operator", [operator], OPERATOR),
        ],
    }


class Traffic(threading.Thread):
    """Paced inference requests through the router, with labels for half of them.

    It runs while the checks run, so every rate window holds increasing counters
    (a burst before the first scrape would leave rates at 0 and ratios NaN).
    Bounded: it stops after MAX_REQUESTS or when told to.
    """

    def __init__(self, router: str) -> None:
        super().__init__(daemon=True)
        self.router = router
        self.stop_event = threading.Event()
        self.sent = 0
        self.error: str | None = None

    def run(self) -> None:
        rng = np.random.default_rng(7)
        labels: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.router, timeout=30) as client:
            while self.sent < MAX_REQUESTS and not self.stop_event.wait(PACE_S):
                rows = rng.normal(size=(2, FEATURES)).astype(np.float32)
                request_id = uuid.uuid4().hex
                tensor = {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
                answer = client.post(
                    f"/v2/models/{MODEL}/infer",
                    json={"inputs": [tensor]},
                    headers={"x-request-id": request_id},
                )
                if answer.status_code != 200:
                    self.error = f"infer answered {answer.status_code}: {answer.text}"
                    return
                self.sent += 1
                if self.sent % 2 == 0:
                    label = int(rng.integers(0, 3))
                    labels.append({"id": request_id, "label": [label, label]})
                if len(labels) >= 10:
                    answer = client.post(f"/v2/models/{MODEL}/feedback", json=labels)
                    if answer.status_code != 200:
                        self.error = f"feedback answered {answer.status_code}: {answer.text}"
                        return
                    labels = []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = procs.require_binary("prometheus", "scrapes the data plane")
    work = tmp_path_factory.mktemp("acceptance")
    logs = work / "logs"
    rng = np.random.default_rng(3)
    np.save(work / "reference.npy", rng.normal(size=(500, FEATURES)).astype(np.float32))
    with ExitStack() as stack:
        servers: list[procs.Process] = []
        urls: dict[str, str] = {}
        for version, seed in VERSIONS.items():
            model = mlp_classifier(work / f"{version}.onnx", layers=(FEATURES, 16, 3), seed=seed)
            profile = work / f"{version}.profile.json"
            procs.start(
                procs.kanaria(
                    "profile", "--model", str(model), "--data", str(work / "reference.npy"),
                    "-o", str(profile),
                ),
                logs, f"profile-{version}",
            ).popen.wait(120)  # fmt: skip
            assert profile.is_file(), (logs / f"profile-{version}.log").read_text()
            port = procs.free_port()
            urls[version] = f"http://127.0.0.1:{port}"
            server = procs.start(
                procs.kanaria(
                    "serve-model", "--model", str(model), "--name", MODEL, "--version", version,
                    "--port", str(port), "--reference", str(profile), "--drift-window", "50",
                ),
                logs, f"server-{version}",
            )  # fmt: skip
            stack.callback(server.stop)
            servers.append(server)
        # Both serving versions run a partial confidence policy, so answers are split
        # between automated and review (a fifth of the automated ones spot-checked), and
        # the labels below land on review cases too.
        # Review cases go to a webhook nobody answers, through a one-case buffer: the
        # queue and its drops have data (KanariaReviewQueueDropping needs 5m to fire).
        policy = {"mode": "partial", "threshold": 0.6, "spotCheck": 0.2}
        routes = {
            "models": {
                MODEL: {
                    "versions": {
                        "v1": {"url": urls["v1"], "weight": 70, "automation": policy},
                        "v2": {"url": urls["v2"], "weight": 30, "automation": policy},
                        "v3": {"url": urls["v3"], "weight": 0},
                    },
                    "mirror": {"version": "v3", "percent": 100},
                    "review": {
                        "webhook": f"http://127.0.0.1:{procs.free_port()}/cases",
                        "bufferSize": 1,
                    },
                }
            }
        }
        (work / "routes.yaml").write_text(yaml.safe_dump(routes))
        router_port, exporter_port, prom_port = (procs.free_port() for _ in range(3))
        router = procs.start(
            procs.kanaria(
                "route", "--config", str(work / "routes.yaml"), "--host", "127.0.0.1",
                "--port", str(router_port),
            ),
            logs, "router",
        )  # fmt: skip
        stack.callback(router.stop)
        exporter = procs.start(
            [
                sys.executable, "-m", "tests.kanaria.monitoring.operator_metrics_exporter",
                "--port", str(exporter_port), "--model", MODEL,
                "--stable", "v1", "--candidate", "v2", "--shadow", "v3",
            ],
            logs, "operator-metrics-exporter",
        )  # fmt: skip
        stack.callback(exporter.stop)
        for server, url in zip(servers, urls.values(), strict=True):
            server.wait_http(f"{url}/v2/health/ready", timeout=120)
        router_url = f"http://127.0.0.1:{router_port}"
        router.wait_http(f"{router_url}/v2/health/ready", timeout=60)
        exporter.wait_http(f"http://127.0.0.1:{exporter_port}/metrics", timeout=60)
        config = _scrape_config(
            f"127.0.0.1:{router_port}",
            [u.removeprefix("http://") for u in urls.values()],
            f"127.0.0.1:{exporter_port}",
        )
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = procs.start(
            [
                prometheus_bin, f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            logs, "prometheus",
        )  # fmt: skip
        stack.callback(prometheus.stop)
        prometheus_url = f"http://127.0.0.1:{prom_port}"
        prometheus.wait_http(f"{prometheus_url}/-/ready", timeout=60)
        traffic = Traffic(router_url)
        traffic.start()
        stack.callback(traffic.join, 60)
        stack.callback(traffic.stop_event.set)
        procs.wait_until(lambda: traffic.sent >= 20 or traffic.error is not None, 120, "traffic")
        assert traffic.error is None, traffic.error
        yield Stack(prometheus_url, router_url, traffic)


def _result(stack: Stack, expr: str) -> list[dict[str, Any]]:
    body = _query(stack.prometheus, dashboard.resolve(expr))
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _missing_data(stack: Stack) -> list[str]:
    """Queries that return nothing yet, or per-version ones without a version label."""
    missing = []
    for panel, query in dashboard.all_queries():
        result = _result(stack, query.expr)
        if not result:
            missing.append(f"{panel.title}: {query.expr}")
        elif not all(math.isfinite(float(r["value"][1])) for r in result):
            missing.append(f"{panel.title} (not a number yet): {query.expr}")
        elif panel.per_version and not all(r["metric"].get("version") for r in result):
            missing.append(f"{panel.title} (no version label): {query.expr}")
    return missing


def test_every_dashboard_query_parses_and_returns_data(stack: Stack) -> None:
    # The scrapes after the traffic, and 1s rule evaluations, bring each series in;
    # wait for it rather than for a fixed time.
    missing: list[str] = []

    def all_present() -> bool:
        missing[:] = _missing_data(stack)
        return not missing

    try:
        procs.wait_until(all_present, 90, "every panel to return data", interval=1.0)
    except TimeoutError:
        pytest.fail("panels without data:\n" + "\n".join(missing))
    assert stack.traffic.error is None, stack.traffic.error


def test_the_shipped_dashboard_json_holds_exactly_the_queries_checked(stack: Stack) -> None:
    shipped = json.loads((ROOT / MANIFESTS / DASHBOARD_FILE).read_text())
    exprs = [t["expr"] for p in shipped["panels"] for t in p.get("targets", [])]
    assert exprs == [q.expr for _, q in dashboard.all_queries()]


def test_per_version_panels_show_every_routed_version(stack: Stack) -> None:
    expr = next(
        q.expr for p, q in dashboard.all_queries() if p.title == "Requests per second by version"
    )

    def rates() -> dict[str, float]:
        return {r["metric"]["version"]: float(r["value"][1]) for r in _result(stack, expr)}

    # v1 and v2 carry traffic; the shadow v3 is routed at weight 0, so its series
    # exists (counters start at zero) and must read 0: mirrored copies are not
    # client traffic.
    procs.wait_until(
        lambda: {v for v, rate in rates().items() if rate > 0} == {"v1", "v2"},
        60, "router traffic of v1 and v2",
    )  # fmt: skip
    assert rates().get("v3", 0.0) == 0.0
    shadow = next(
        q.expr for p, q in dashboard.all_queries() if p.title.startswith("Shadow agreement")
    )
    procs.wait_until(lambda: bool(_result(stack, shadow)), 60, "shadow comparisons of v3")
    series = _result(stack, shadow)
    assert {r["metric"]["version"] for r in series} == {"v3"}
    assert {r["metric"]["baseline"] for r in series} <= {"v1", "v2"}
    agreement = [float(r["value"][1]) for r in series]
    assert all(0.0 <= a <= 1.0 for a in agreement)
    # different seeds make different models: the shadow does not agree on everything
    assert min(agreement) < 1.0


def test_the_starvation_panel_reads_the_share_of_copies_the_shadow_answered(
    stack: Stack,
) -> None:
    """Copies reach the shadow v3 here: the share answered is positive (0 would read
    "starved"), per shadow version only, and never above 1."""
    expr = next(
        q.expr for p, q in dashboard.all_queries() if p.title.startswith("Mirrored copies the")
    )
    procs.wait_until(lambda: bool(_result(stack, expr)), 60, "mirrored copies of v3")
    series = _result(stack, expr)
    assert {r["metric"]["version"] for r in series} == {"v3"}
    assert all(0.0 < float(r["value"][1]) <= 1.0 for r in series), series


def test_every_alert_and_annotation_expression_parses_and_the_rules_load_healthy(
    stack: Stack,
) -> None:
    for alert in alerts.ALERTS:
        _result(stack, alert.expr)
    for annotation in dashboard.ANNOTATIONS:
        _result(stack, annotation.expr)

    def rules_healthy() -> bool:
        body = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=30).json()
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        names = {r["name"] for r in rules}
        evaluated = [r for r in rules if not r["lastEvaluation"].startswith("0001-")]
        healthy = all(r["health"] == "ok" for r in evaluated)
        return names == {a.name for a in alerts.ALERTS} and len(evaluated) == len(rules) and healthy

    procs.wait_until(rules_healthy, 60, "Prometheus to evaluate every alert rule", interval=1.0)


def test_a_disagreeing_shadow_makes_its_alert_pending(stack: Stack) -> None:
    """v3 is a different model: the disagreement alert's expression matches live data."""

    def pending() -> bool:
        body = httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=30).json()
        return any(
            a["labels"]["alertname"] == "KanariaShadowDisagreement"
            and a["labels"]["version"] == "v3"
            and a["state"] == "pending"
            for a in body["data"]["alerts"]
        )

    procs.wait_until(pending, 90, "KanariaShadowDisagreement to go pending for v3", interval=1.0)


def test_no_alert_fires_on_a_healthy_data_plane(stack: Stack) -> None:
    body = httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=30).json()
    firing = {a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] == "firing"}
    # v3 is a different model in shadow: disagreement is expected but needs 10m to fire
    assert firing == set()


@pytest.mark.parametrize("component", [ROUTER, MODEL_SERVER, OPERATOR])
def test_software_row_has_cpu_and_memory_of_every_component(stack: Stack, component: str) -> None:
    # The dashboard's software row reads the process collector of each component.
    for metric in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        expr = f'{metric}{{{COMPONENT_LABEL}="{component}"}}'
        procs.wait_until(lambda e=expr: bool(_result(stack, e)), 60, expr, interval=1.0)  # type: ignore[misc]
