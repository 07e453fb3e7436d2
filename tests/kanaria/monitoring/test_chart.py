"""The Helm chart: lints, renders every CI values file, matches manifests/, installs and upgrades.

`helm` comes from the test control plane's binaries (KANARIA_CONTROL_PLANE, set
by `make test`, or KUBEBUILDER_ASSETS); the install test runs against the real
kube-apiserver of tests/support/controlplane.py, where kwok stands in for the
kubelet so the operator Deployment becomes Available without running its image.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kanaria_operator.settings import OperatorSettings

from kanaria.monitoring.render import CHART_FILES, DASHBOARD_FILE, MANIFESTS
from scripts import helm_values_table
from tests.support.controlplane import (
    ControlPlane,
    ControlPlaneUnavailableError,
    find_binaries,
    unavailable,
)

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.built  # helm comes from the control-plane build

CHART = ROOT / "helm" / "kanaria"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.36.0"
"""Capabilities for `helm template`/`lint` (no cluster to ask); the chart needs >= 1.27."""
NAMESPACE = "kanaria-system"
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"}


@functools.cache
def helm_binary() -> str:
    """helm from the control-plane binaries, else PATH; skip (fail in CI) when absent."""
    for var in ("KANARIA_CONTROL_PLANE", "KUBEBUILDER_ASSETS"):
        value = os.environ.get(var)
        if value and (Path(value) / "helm").is_file():
            return str(Path(value) / "helm")
    found = shutil.which("helm")
    if found:
        return found
    try:  # the control-plane build (cached after the first run) includes helm
        return str(find_binaries() / "helm")
    except ControlPlaneUnavailableError as exc:
        unavailable(f"helm not found: {exc}")
        raise


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
    return result


def render(*args: str) -> list[dict[str, Any]]:
    out = helm(
        "template", "kanaria", str(CHART), "-n", NAMESPACE, "--kube-version", KUBE_VERSION, *args
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def load_dir(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


# ------------------------------------------------------------------ lint and render


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "none")
def test_helm_lint_strict(values: Path | None) -> None:
    extra = ["-f", str(values)] if values else []
    result = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *extra)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_ci_values_file_renders_a_secure_operator(values: Path) -> None:
    docs = render("-f", str(values))
    deployment = by_kind_name(docs)[("Deployment", "kanaria-operator")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KANARIA_SERVER_IMAGE"]
    assert env["KANARIA_ROUTER_IMAGE"]


def test_ci_values_cover_the_switches() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "monitoring-values.yaml", "namespaced-values.yaml"} <= names


def test_namespaced_values_reach_the_operator() -> None:
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    kinds = {d["kind"] for d in docs}
    assert "CustomResourceDefinition" not in kinds  # installCRDs: false
    container = by_kind_name(docs)[("Deployment", "kanaria-operator")]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["args"] == ["operator", "--namespace", "ml", "--namespace", "ml-staging"]
    assert container["image"] == "registry.example.com/kanaria/operator:0.1.0-rc1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KANARIA_ROUTER_IMAGE"] == "registry.example.com/kanaria/router:0.1.0"
    assert env["KANARIA_SERVER_IMAGE"] == "registry.example.com/kanaria/server:0.1.0"
    assert env["KANARIA_IMAGE_PULL_POLICY"] == "Always"
    assert env["KANARIA_RESYNC_INTERVAL_S"] == "15"
    assert env["KANARIA_LEASE_DURATION_S"] == "30"
    # the names the chart sets are settings the operator reads
    for name in env:
        field = name.removeprefix("KANARIA_").lower()
        assert field in OperatorSettings.model_fields, name


def test_mismatched_data_plane_pull_policies_fail_with_a_clear_message() -> None:
    result = helm(
        "template", "kanaria", str(CHART), "--kube-version", KUBE_VERSION,
        "--set", "router.image.pullPolicy=Never", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "must be equal: the operator applies one pull policy" in result.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("operator.watchNamespaces=ml", "at '/operator/watchNamespaces': got string, want array"),
        ("serviceMonitor.enable=true", "additional properties 'enable' not allowed"),
        ("operator.prometheusUrl=prometheus:9090", "'/operator/prometheusUrl'"),
        ("operator.image.pullPolicy=Sometimes", "'/operator/image/pullPolicy'"),
        ("operator.resyncIntervalSeconds=0", "'/operator/resyncIntervalSeconds'"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(setting: str, message: str) -> None:
    result = helm(
        "template", "kanaria", str(CHART), "--kube-version", KUBE_VERSION, "--set", setting,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr


# ------------------------------------------------------------------ matches manifests/


def _normalize_operator(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop what only Helm adds, and env entries that restate an operator default."""
    doc = json.loads(json.dumps(doc))
    for meta in (doc["metadata"], doc.get("spec", {}).get("template", {}).get("metadata", {})):
        labels = meta.get("labels")
        if labels is not None:
            for key in HELM_ONLY_LABELS:
                labels.pop(key, None)
    if doc["kind"] == "Deployment":
        for container in doc["spec"]["template"]["spec"]["containers"]:
            env = []
            for entry in container.get("env", []):
                field = OperatorSettings.model_fields.get(
                    entry["name"].removeprefix("KANARIA_").lower()
                )
                if field is not None and "value" in entry and entry["value"] == field.default:
                    continue  # setting a variable to its default is the same operator
                env.append(entry)
            container["env"] = env
    return doc


def test_rendered_operator_objects_match_manifests_operator() -> None:
    manifests = [d for d in load_dir(ROOT / "manifests" / "operator") if d["kind"] != "Namespace"]
    assert manifests, "manifests/operator is empty"
    rendered = by_kind_name(render())
    for expected in manifests:
        key = (expected["kind"], expected["metadata"]["name"])
        assert key in rendered, f"the chart does not render {key}"
        assert _normalize_operator(rendered[key]) == _normalize_operator(expected), key


def test_crds_in_the_chart_are_the_generated_files() -> None:
    generated = {p.name: p.read_text() for p in (ROOT / "manifests" / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert "modeldeployments.kanaria.io.yaml" in generated
    assert shipped == generated, "run `make crd` (it refreshes helm/kanaria/files/crds too)"
    rendered = {
        d["metadata"]["name"]: d for d in render() if d["kind"] == "CustomResourceDefinition"
    }
    for text in generated.values():
        crd = yaml.safe_load(text)
        got = rendered[crd["metadata"]["name"]]
        assert got["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert got["spec"] == crd["spec"]


def test_monitoring_objects_match_manifests_monitoring() -> None:
    rendered = by_kind_name(render("-f", str(CHART / "ci" / "monitoring-values.yaml")))
    # prometheus-rules.yaml is a plain rule file (no kind): the PrometheusRule's spec
    expected = [d for d in load_dir(ROOT / MANIFESTS) if "kind" in d]
    assert len(expected) == 5  # 3 monitors, the rule, the dashboard ConfigMap
    for doc in expected:
        got = rendered[(doc["kind"], doc["metadata"]["name"])]
        assert got.get("spec") == doc.get("spec"), doc["metadata"]["name"]
        assert got.get("data") == doc.get("data"), doc["metadata"]["name"]
        assert doc["metadata"]["labels"].items() <= got["metadata"]["labels"].items()
    cm = rendered[("ConfigMap", "kanaria-dashboard")]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["data"][DASHBOARD_FILE] == (ROOT / CHART_FILES / DASHBOARD_FILE).read_text()
    assert rendered[("PrometheusRule", "kanaria")]["metadata"]["labels"]["release"] == (
        "kube-prometheus-stack"
    )


def test_monitoring_is_off_by_default() -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not any(d["metadata"]["name"] == "kanaria-dashboard" for d in render())


def test_helm_test_hook_checks_the_operator_metrics_service() -> None:
    pods = [d for d in render() if d["kind"] == "Pod"]
    (pod,) = pods
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"kanaria-operator-metrics.{NAMESPACE}.svc:9090/metrics" in script
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


# ------------------------------------------------------------------ documentation


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    assert helm_values_table.undocumented(text) == []


def test_values_table_in_chart_readme_is_up_to_date() -> None:
    assert helm_values_table.main(["--check"]) == 0


def test_values_table_check_notices_an_undocumented_field(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "newKnob: 3\n")
    assert helm_values_table.main(["--check", "--chart", str(chart)]) == 1
    values.write_text(values.read_text().replace("newKnob: 3\n", "# -- A knob.\nnewKnob: 3\n"))
    assert helm_values_table.main(["--check", "--chart", str(chart)]) == 1  # README stale
    assert helm_values_table.main(["--write", "--chart", str(chart)]) == 0
    assert "| `newKnob` | `3` | A knob. |" in (chart / "README.md").read_text()


# ------------------------------------------------------------------ real control plane


@pytest.fixture(scope="module")
def chart_cluster() -> Iterator[ControlPlane]:
    """A control plane of the chart's own.

    The chart's cluster-wide objects (CRD, ClusterRole kanaria-operator) and its
    kanaria-system objects have the names manifests/operator uses, which the
    operator tests kubectl-apply into the shared session control plane; Helm
    refuses to adopt objects it did not create, so sharing would make the result
    depend on test order.
    """
    if shutil.which("openssl") is None:
        unavailable("openssl not found: needed to make the test cluster's certificates")
    try:
        bin_dir = find_binaries()
    except ControlPlaneUnavailableError as exc:
        unavailable(str(exc))
        raise
    workdir = Path(tempfile.mkdtemp(prefix="kanaria-chart-cp-"))
    cluster = ControlPlane(bin_dir=bin_dir, workdir=workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.controlplane
def test_helm_install_and_upgrade_make_the_operator_available(
    chart_cluster: ControlPlane,
) -> None:
    control_plane = chart_cluster
    ns = "kanaria-system"
    release = ["kanaria", str(CHART), "-n", ns]
    try:
        installed = control_plane.helm(
            "upgrade", "--install", *release, "--create-namespace", "--wait", "--timeout", "180s"
        )
        # NOTES.txt: what to do next
        assert f"kubectl -n {ns} rollout status deployment/kanaria-operator" in installed.stdout
        assert "kubectl get mdep -A" in installed.stdout
        control_plane.kubectl(
            "-n", ns, "wait", "--for=condition=Available", "deployment/kanaria-operator",
            "--timeout=120s",
        )  # fmt: skip
        deployment = control_plane.get_json("-n", ns, "deployment", "kanaria-operator")
        assert deployment["spec"]["replicas"] == 1
        control_plane.helm(
            "upgrade", *release, "--wait", "--timeout", "180s",
            "--set", "operator.replicas=2", "--set", "operator.resyncIntervalSeconds=10",
        )  # fmt: skip
        control_plane.kubectl(
            "-n", ns, "wait", "--for=condition=Available", "deployment/kanaria-operator",
            "--timeout=120s",
        )  # fmt: skip
        deployment = control_plane.get_json("-n", ns, "deployment", "kanaria-operator")
        assert deployment["spec"]["replicas"] == 2
        assert deployment["status"].get("availableReplicas") == 2
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]
               ["containers"][0]["env"]}  # fmt: skip
        assert env["KANARIA_RESYNC_INTERVAL_S"] == "10"
        history = control_plane.helm("history", "kanaria", "-n", ns, "-o", "json").stdout
        assert [r["status"] for r in json.loads(history)] == ["superseded", "deployed"]
        crds = control_plane.get_json("crd")["items"]
        shipped = list((CHART / "files" / "crds").glob("*.yaml"))
        assert len([c for c in crds if c["spec"]["group"] == "kanaria.io"]) == len(shipped)
    finally:
        control_plane.helm("uninstall", "kanaria", "-n", ns, "--wait", check=False)


def test_values_table_reports_a_missing_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert helm_values_table.main(["--check", "--chart", str(tmp_path / "nope")]) == 1
    assert "error:" in capsys.readouterr().err


@pytest.mark.controlplane
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_ci_rendering_is_accepted_by_the_api_server(
    chart_cluster: ControlPlane, values: Path
) -> None:
    """Server-side dry run of each rendering: the real apiserver validates every object.

    The Prometheus Operator's kinds are left out (their CRDs are not in the test
    cluster); the monitoring tests check those objects against manifests/monitoring.
    """
    docs = [
        d
        for d in render("-f", str(values))
        if not d["apiVersion"].startswith("monitoring.coreos.com/")
    ]
    for ns in sorted({d["metadata"].get("namespace") for d in docs} - {None}):
        chart_cluster.kubectl("create", "namespace", ns, check=False)
    result = chart_cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)
