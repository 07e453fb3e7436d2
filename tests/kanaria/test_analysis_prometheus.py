"""The Prometheus source and the built-in PromQL templates against the real
Prometheus binary scraping a real exporter process, so every template is proven
to parse and to compute what its docstring says."""

from __future__ import annotations

import base64
import socket
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import httpx
import pytest

from kanaria.analysis import (
    AmbiguousResultError,
    NoDataError,
    PrometheusSource,
    QueryFailedError,
    SourceUnavailableError,
    measure,
)
from kanaria.api import MetricGate, Verdict
from kanaria.rollout import MeasurementRequest
from tests.support.procs import Process, free_port, require_binary, start, wait_until

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

WINDOW = "20s"
USER, PASSWORD = "kanaria", "s3cret"

# Per tick (every 0.05s) the exporter adds, for model "fraud":
#   v1: 10 requests, all 200 (latency 0.05s)
#   v2: 8x200, 1x404, 1x500 (latency 0.2s); drift x0=0.1, x1=0.3;
#       shadow 3 agree / 1 disagree; feedback 4 correct / 1 incorrect;
#       at the server: 6x200 + 4x503 infer requests (latency 0.05s), 5 failed feedback posts
EXPORTER = textwrap.dedent(
    """
    import sys, time
    from prometheus_client import Counter, Gauge, Histogram, start_http_server
    from kanaria import metric_names as n

    req = Counter(n.ROUTER_REQUESTS[: -len("_total")], "r", ["model", "version", "code"])
    lat = Histogram(n.ROUTER_LATENCY, "l", ["model", "version"],
                    buckets=(0.025, 0.1, 0.25, 0.5, 1.0))
    drift = Gauge(n.INPUT_DRIFT, "d", ["model", "version", "input"])
    shadow = Counter(n.SHADOW_COMPARISONS[: -len("_total")], "s",
                     ["model", "version", "baseline", "result"])
    feedback = Counter(n.FEEDBACK[: -len("_total")], "f", ["model", "version", "result"])
    server = Counter(n.SERVER_REQUESTS[: -len("_total")], "q",
                     ["model", "version", "endpoint", "code"])
    server_lat = Histogram(n.SERVER_LATENCY, "sl", ["model", "version"],
                           buckets=(0.025, 0.1, 0.25, 0.5, 1.0))
    drift.labels("fraud", "v2", "x0").set(0.1)
    drift.labels("fraud", "v2", "x1").set(0.3)
    start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    while True:
        req.labels("fraud", "v1", "200").inc(10)
        for _ in range(10):
            lat.labels("fraud", "v1").observe(0.05)
            lat.labels("fraud", "v2").observe(0.2)
        req.labels("fraud", "v2", "200").inc(8)
        req.labels("fraud", "v2", "404").inc(1)
        req.labels("fraud", "v2", "500").inc(1)
        shadow.labels("fraud", "v2", "v1", "agree").inc(3)
        shadow.labels("fraud", "v2", "v1", "disagree").inc(1)
        feedback.labels("fraud", "v2", "correct").inc(4)
        feedback.labels("fraud", "v2", "incorrect").inc(1)
        server.labels("fraud", "v2", "infer", "200").inc(6)
        server.labels("fraud", "v2", "infer", "503").inc(4)
        server.labels("fraud", "v2", "feedback", "500").inc(5)
        for _ in range(10):
            server_lat.labels("fraud", "v2").observe(0.05)
        time.sleep(0.05)
    """
)


@dataclass
class Stack:
    url: str
    exporter: Process
    prometheus: Process


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = require_binary("prometheus", "the PromQL templates are tested on real Prometheus")
    root = tmp_path_factory.mktemp("prom")
    logs = root / "logs"
    script = root / "exporter.py"
    script.write_text(EXPORTER)
    exporter_port, prom_port = free_port(), free_port()
    repo = Path(__file__).resolve().parents[2]
    exporter = start(
        [sys.executable, str(script), str(exporter_port)],
        logs,
        "exporter",
        env={"PYTHONPATH": str(repo)},
    )
    (root / "prometheus.yml").write_text(
        textwrap.dedent(
            f"""
            global: {{scrape_interval: 1s, evaluation_interval: 1s}}
            scrape_configs:
              - job_name: exporter
                static_configs: [{{targets: ["127.0.0.1:{exporter_port}"]}}]
            """
        )
    )
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (root / "web.yml").write_text(f'basic_auth_users:\n  {USER}: "{hashed}"\n')
    prometheus = start(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--web.config.file={root / 'web.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        logs,
        "prometheus",
    )
    url = f"http://127.0.0.1:{prom_port}"
    auth = httpx.BasicAuth(USER, PASSWORD)
    try:
        exporter.wait_http(f"http://127.0.0.1:{exporter_port}/metrics", 30)

        def has_window() -> bool:
            # Both ends of the window hold samples once the v2 error ratio has a value.
            r = httpx.get(
                f"{url}/api/v1/query",
                params={"query": f"count_over_time(up[{WINDOW}])"},
                auth=auth,
                timeout=2,
            )
            result = r.json()["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= 5

        try:
            wait_until(has_window, 90, "Prometheus to hold 5 scrapes", interval=0.5)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{prometheus.output()[-3000:]}") from exc
        yield Stack(url, exporter, prometheus)
    finally:
        prometheus.stop()
        exporter.stop()


def _auth_headers() -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def source(stack: Stack) -> Iterator[PrometheusSource]:
    with PrometheusSource(stack.url, timeout=10, headers=_auth_headers()) as s:
        yield s


def _measure(
    source: PrometheusSource,
    version: str = "v2",
    namespace: str | None = None,
    min_requests: int = 0,
    **gate: object,
) -> tuple[Verdict, float | None, str]:
    g = MetricGate.model_validate({"name": "g", **gate})
    req = MeasurementRequest(
        purpose="analysis", version=version, gate=g, interval=WINDOW, minRequests=min_requests
    )
    m = measure(source, req, "fraud", namespace, datetime.now(UTC))
    return m.verdict, m.value, m.reason


@pytest.mark.parametrize(
    ("gate", "version", "expected"),
    [
        ({"builtin": "successRate", "min": 0.5}, "v2", 0.9),  # 404 is the caller's fault
        ({"builtin": "errorRate", "max": 0.5}, "v2", 0.1),
        ({"builtin": "successRate", "min": 0.5}, "v1", 1.0),
        ({"builtin": "errorRate", "max": 0.5}, "v1", 0.0),  # no 5xx series at all reads as 0
        ({"builtin": "inputDrift", "max": 1.0}, "v2", 0.3),  # max over inputs
        ({"builtin": "shadowAgreement", "min": 0.5}, "v2", 0.75),
        ({"builtin": "accuracy", "min": 0.5}, "v2", 0.8),
        # All observations in the (0.1, 0.25] bucket: Prometheus interpolates linearly.
        ({"builtin": "latencyP99", "max": 1.0}, "v2", 0.1 + 0.15 * 0.99),
        ({"builtin": "latencyP99", "max": 1.0, "quantile": 0.5}, "v2", 0.1 + 0.15 * 0.5),
        ({"builtin": "latencyP99", "max": 1.0}, "v1", 0.025 + 0.075 * 0.99),
    ],
)
def test_builtin_templates_compute_on_prometheus(
    source: PrometheusSource, gate: dict[str, object], version: str, expected: float
) -> None:
    verdict, value, reason = _measure(source, version, None, 0, **gate)
    assert verdict is Verdict.Successful, reason
    assert value == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ({"builtin": "successRate", "min": 0.1}, 0.6),  # only infer requests count
        ({"builtin": "errorRate", "max": 0.9}, 0.4),
        ({"builtin": "latencyP99", "max": 1.0}, 0.025 + 0.075 * 0.99),
    ],
)
def test_server_side_templates_for_mirrored_traffic(
    source: PrometheusSource, gate: dict[str, object], expected: float
) -> None:
    g = MetricGate.model_validate({"name": "g", **gate})
    req = MeasurementRequest(
        purpose="analysis", version="v2", gate=g, interval=WINDOW, traffic="server", minRequests=5
    )
    m = measure(source, req, "fraud", None, datetime.now(UTC))
    assert m.verdict is Verdict.Successful, m.reason
    assert m.value == pytest.approx(expected, abs=0.01)
    assert "kanaria_server_" in m.query


def test_failing_value_is_failed_with_reason(source: PrometheusSource) -> None:
    verdict, value, reason = _measure(source, builtin="successRate", min=0.99)
    assert verdict is Verdict.Failed
    assert value == pytest.approx(0.9, abs=0.01)
    assert reason.startswith("value 0.9")
    assert reason.endswith("< min 0.99")


def test_custom_query_with_placeholders(source: PrometheusSource) -> None:
    query = (
        'sum(rate(kanaria_feedback_total{model="{{model}}",version="{{version}}"}[{{interval}}]))'
    )
    verdict, value, _ = _measure(source, query=query, min=1)
    assert verdict is Verdict.Successful
    assert value is not None
    assert value > 0


def test_unknown_version_is_inconclusive(source: PrometheusSource) -> None:
    verdict, value, reason = _measure(source, "v9", builtin="successRate", min=0.9)
    assert verdict is Verdict.Inconclusive
    assert value is None
    assert reason == f"no requests in {WINDOW}: nothing to judge"


def test_namespace_matcher_is_rendered_only_when_given(source: PrometheusSource) -> None:
    # The exporter's series carry no namespace label (like a local run).
    assert _measure(source, "v2", None, builtin="accuracy", min=0.5)[0] is Verdict.Successful
    assert _measure(source, "v2", "ml", builtin="accuracy", min=0.5)[0] is Verdict.Inconclusive


def test_min_requests(source: PrometheusSource) -> None:
    verdict, _, reason = _measure(source, min_requests=10**9, builtin="successRate", min=0.5)
    assert verdict is Verdict.Inconclusive
    assert "< minRequests 1000000000" in reason
    assert _measure(source, min_requests=10, builtin="successRate", min=0.5)[0] is (
        Verdict.Successful
    )


def test_no_series_is_inconclusive(source: PrometheusSource) -> None:
    with pytest.raises(NoDataError, match="no series"):
        source.instant('kanaria_router_requests_total{version="v9"}')


def test_several_series_is_an_error_naming_them(source: PrometheusSource) -> None:
    verdict, _, reason = _measure(source, query='kanaria_input_drift_psi{model="{{model}}"}', max=1)
    assert verdict is Verdict.Error
    assert "returned 2 series" in reason
    assert 'input="x0"' in reason
    with pytest.raises(AmbiguousResultError):
        source.instant("kanaria_input_drift_psi")


def test_bad_queries_are_errors_with_prometheus_reason(source: PrometheusSource) -> None:
    verdict, _, reason = _measure(source, query="sum(rate(foo[5m]", max=1)
    assert verdict is Verdict.Error
    assert reason.startswith("Prometheus rejected the query")
    with pytest.raises(QueryFailedError, match="instant vector"):
        source.instant("kanaria_input_drift_psi[1m]")
    assert source.instant("1 + 1") == 2.0
    with pytest.raises(NoDataError):
        source.instant("0 / 0")


def test_auth_header_is_sent(stack: Stack) -> None:
    with (
        PrometheusSource(stack.url, timeout=10) as anonymous,
        pytest.raises(SourceUnavailableError, match="HTTP 401"),
    ):
        anonymous.instant("1")


def test_unreachable_prometheus_is_an_error() -> None:
    with PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=2) as down:
        verdict, _, reason = _measure(down, builtin="successRate", min=0.5)
    assert verdict is Verdict.Error
    assert "cannot reach Prometheus" in reason


def test_silent_server_times_out_as_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts connections at the kernel level, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with PrometheusSource(url, timeout=0.5) as silent:
            verdict, _, reason = _measure(silent, builtin="successRate", min=0.5)
    assert verdict is Verdict.Error
    assert "did not answer within 0.5s" in reason


def test_no_data_names_a_router_target_prometheus_cannot_scrape(
    stack: Stack, tmp_path: Path
) -> None:
    """A gate without data says why when Prometheus' scrapes are the cause: here the
    router's target is down (nothing listens there) while another target is fine."""
    binary = require_binary("prometheus", "the scrape diagnosis reads a real Prometheus")
    exporter = stack.url  # any healthy target will do: the first Prometheus itself
    closed, port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        textwrap.dedent(
            f"""
            global: {{scrape_interval: 500ms}}
            scrape_configs:
              - job_name: local
                basic_auth: {{username: {USER}, password: {PASSWORD}}}
                static_configs:
                  - {{targets: ["{exporter.removeprefix("http://")}"],
                      labels: {{component: server-v2}}}}
                  - {{targets: ["127.0.0.1:{closed}"], labels: {{component: router}}}}
            """
        )
    )
    prometheus = start(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path / "logs",
        "prometheus-router-down",
    )  # fmt: skip
    try:
        with PrometheusSource(f"http://127.0.0.1:{port}", timeout=10) as source:

            def scraped() -> bool:
                return {t.health for t in source.targets()} == {"up", "down"}

            wait_until(scraped, 60, "one target up, one down", interval=0.2)
            verdict, _, reason = _measure(source, "v2", builtin="successRate", min=0.5)
            assert verdict is Verdict.Inconclusive
            assert reason.startswith(f"no requests in {WINDOW}: nothing to judge; "), reason
            assert "Prometheus has no healthy target for the router (router: " in reason, reason
            assert "connection refused" in reason, reason
            # The model server's target is up: a gate read from it gets no such note.
            _, _, reason = _measure(source, "v2", builtin="inputDrift", max=1.0)
            assert "Prometheus" not in reason, reason
    finally:
        prometheus.stop()
