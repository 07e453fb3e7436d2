"""The whole product on real pods: the chart installed with helm, ModelDeployments
served by model-server and router pods from the images built here, gates read from
a real Prometheus that found those pods, and a steady client counting every answer.

Each test owns a namespace and a ModelDeployment; a client sends V2 requests through
the ModelDeployment's Service the whole time. "0 failed requests caused by the
rollouts" is checked against that client: the faulty version's injected errors are
counted apart (they are the model's doing, and the gate's job is to react to them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from kanaria.local.traffic import TrafficGenerator
from tests.kanaria_operator.helpers import healthy_on, wait_status
from tests.kanaria_operator.node_env import (
    MODEL_LAYERS,
    RELEASE_NAMESPACE,
    WAIT_S,
    Platform,
    service_ip,
    wait_for,
)
from tests.support import automation_stream as auto
from tests.support import contract, procs
from tests.support.node import FIGURES, NodeCluster

pytestmark = [pytest.mark.realnode, pytest.mark.prometheus, pytest.mark.slow]

INTERVAL_S = 2.0
WIDTH = MODEL_LAYERS[0]


def node_md(
    name: str,
    model: dict[str, str],
    strategy: dict[str, Any],
    replicas: int = 1,
    metrics: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ModelDeployment whose models come from the in-cluster file server."""
    gates = metrics or [{"name": "success-rate", "builtin": "successRate", "min": 0.95}]
    return {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "replicas": replicas,
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
            "strategy": strategy,
            "analysis": {
                "interval": f"{INTERVAL_S:g}s",
                "failureLimit": 0,
                "minRequests": 5,
                "metrics": gates,
            },
        },
    }


@dataclass
class Sample:
    at: float
    status: dict[str, Any]


@dataclass
class StatusWatch:
    """Polls one ModelDeployment's status in the background (bounded by ``limit_s``),
    so a test can tell when weights moved and in how many moves."""

    cluster: NodeCluster
    namespace: str
    name: str
    limit_s: float = 600.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            result = self.cluster.kubectl(
                "get", "mdep", self.name, "-n", self.namespace, "-o", "json", check=False
            )
            if result.returncode == 0:
                status = json.loads(result.stdout).get("status") or {}
                self.samples.append(Sample(time.monotonic(), status))
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, check: Callable[[dict[str, Any]], bool], after: float = 0.0) -> float | None:
        for s in self.samples:
            if s.at >= after and check(s.status):
                return s.at
        return None

    def seen(self, check: Callable[[dict[str, Any]], bool], after: float = 0.0) -> float:
        """When a sample first met ``check`` (waiting for the watch to catch up with a
        state the test already saw)."""
        found: list[float] = []

        def ok() -> bool:
            at = self.first(check, after)
            if at is not None:
                found.append(at)
            return at is not None

        procs.wait_until(ok, 30, "the status watch to see it", interval=0.1)
        return found[0]

    def weights_seen(self, after: float = 0.0) -> list[dict[str, int]]:
        """Distinct successive weight maps from ``after`` on."""
        out: list[dict[str, int]] = []
        for s in self.samples:
            w = s.status.get("weights") or {}
            if s.at >= after and w and (not out or out[-1] != w):
                out.append(w)
        return out


def patch_spec(cluster: NodeCluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "mdep", name, "-n", namespace, "--type", "merge", "-p", json.dumps({"spec": spec})
    )


@dataclass
class Deployed:
    """A ModelDeployment at its first version, with a steady client on its Service."""

    platform: Platform
    namespace: str
    name: str
    client: TrafficGenerator
    watch: StatusWatch

    @property
    def cluster(self) -> NodeCluster:
        return self.platform.cluster

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = (
            self.cluster.get_json("mdep", self.name, "-n", self.namespace).get("status") or {}
        )
        return st

    def wait(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return wait_status(self.cluster, self.namespace, self.name, check, what, WAIT_S)

    def model_pods(self, version: str) -> dict[str, str]:
        """name -> uid of a version's model-server pods."""
        pods = self.cluster.get_json(
            "pods", "-n", self.namespace, "-l", f"kanaria.io/version={version}"
        )["items"]
        return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}

    def stop_client(self) -> None:
        """Stop the client and check what it saw: no failure the rollouts caused."""
        self.client.stop()
        self.watch.stop()
        stats = self.client.stats
        FIGURES.append(
            f"{self.name}: client {stats.ok} ok, {stats.failed} failed "
            f"({stats.injected} injected by the faulty version), by version "
            f"{dict(stats.by_version)}"
        )
        assert stats.ok > 0
        assert stats.not_injected_failures() == 0, (
            f"failed requests not injected on purpose: {dict(stats.errors)}"
        )


def deploy(
    platform: Platform, namespace: str, doc: dict[str, Any], first_version: str = "v1"
) -> Deployed:
    cluster = platform.cluster
    name = doc["metadata"]["name"]
    applied = time.monotonic()
    cluster.apply(doc, namespace=namespace)
    wait_status(
        cluster, namespace, name, healthy_on(first_version), f"{first_version} Healthy", WAIT_S
    )
    FIGURES.append(f"{name}: applied to Healthy (pods Ready) in {time.monotonic() - applied:.1f}s")
    wait_for(cluster, "--for=condition=Available", "-n", namespace, f"deployment/{name}-router")
    ip = service_ip(cluster, namespace, name)
    client = TrafficGenerator(f"http://{ip}", name, WIDTH, rate=12, workers=3, timeout_s=10)
    procs.wait_until(
        lambda: httpx.get(f"http://{ip}/v2/health/ready", timeout=2).status_code == 200,
        WAIT_S,
        f"{name}'s Service to answer",
        interval=0.5,
    )
    watch = StatusWatch(cluster, namespace, name)
    return Deployed(platform, namespace, name, client.start(), watch)


def test_helm_install_runs_a_restricted_operator_and_helm_test_passes(platform: Platform) -> None:
    cluster = platform.cluster
    pods = cluster.get_json(
        "pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/name=kanaria-operator"
    )["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["serviceAccountName"] == "kanaria-operator"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    name = pod["metadata"]["name"]
    probe = (
        "import os; caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')]; "
        "print(os.getuid(), caps[0].split()[1]); "
        "open('/probe', 'w')"
    )
    result = cluster.kubectl(
        "exec", "-n", RELEASE_NAMESPACE, name, "--", "python", "-c", probe, check=False
    )
    uid, cap_eff = result.stdout.split()
    assert uid == "65532"
    assert int(cap_eff, 16) == 0  # no capabilities
    assert "Read-only file system" in result.stderr  # the root filesystem is read-only
    test = cluster.helm("test", "kanaria", "-n", RELEASE_NAMESPACE, "--timeout", "120s")
    assert "Phase:          Succeeded" in test.stdout or "Succeeded" in test.stdout, test.stdout


def infer_v2(url: str, name: str, rows: np.ndarray) -> np.ndarray:
    """One request with the standard Triton V2 HTTP client (not our code)."""
    client = triton.InferenceServerClient(url=url, connection_timeout=10, network_timeout=10)
    inp = triton.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    result = client.infer(name, [inp])
    out: np.ndarray | None = result.as_numpy("probabilities")
    assert out is not None
    return out


class NodeTarget:
    """The operator on the real node as a :class:`tests.support.contract.Target`."""

    def __init__(self, deployed: Deployed) -> None:
        self.d = deployed

    def source(self, version: str) -> dict[str, str]:
        return self.d.platform.models.source(version)

    def apply(self, spec: dict[str, Any]) -> None:
        patch_spec(self.d.cluster, self.d.namespace, self.d.name, spec)

    def wait(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return self.d.wait(check, what)

    def instances(self, version: str) -> set[str]:
        return set(self.d.model_pods(version).values())

    def failures(self) -> int:
        return self.d.client.stats.not_injected_failures()


def test_the_loop_contract_on_real_pods(platform: Platform, node_namespace: str) -> None:
    """The contract scenarios kanaria up runs too (tests/kanaria/local/test_contract.py):
    a canary promoted and the old version's pods deleted only after the routers run
    routes without it; a faulty version (chaos flags on that version only) rolled back
    on its own with the stable's pods untouched, and the reaction time printed; new
    server settings replacing the stable's pods. Plus what only a cluster shows: V2
    answers through the Service, the printer columns and `kanaria status`."""
    models = platform.models
    first = node_md("fraud", models.source("v1"), contract.CANARY)
    d = deploy(platform, node_namespace, first)
    target = NodeTarget(d)
    try:
        ip = service_ip(d.cluster, node_namespace, "fraud")
        rows = np.random.default_rng(1).normal(size=(4, WIDTH)).astype(np.float32)
        expected = ort.InferenceSession(str(models.paths["v1"])).run(None, {"input": rows})[0]
        np.testing.assert_allclose(infer_v2(f"{ip}:80", "fraud", rows), expected, rtol=1e-5)

        started = time.monotonic()
        contract.promoted_then_old_version_stopped(target, "v1", "v2")
        FIGURES.append(f"canary v1 -> v2 promoted, v1 stopped in {time.monotonic() - started:.1f}s")
        table = d.cluster.kubectl("get", "mdep", "fraud", "-n", node_namespace).stdout
        header, row = table.strip().splitlines()
        assert header.split()[:6] == ["NAME", "STABLE", "CANDIDATE", "STRATEGY", "PHASE", "WEIGHT"]
        assert row.split()[:4] == ["fraud", "v2", "canary", "Healthy"]

        started = time.monotonic()
        contract.faulty_candidate_leaves_the_stable_running(target, "v2", "v3")
        bad_from = d.watch.seen(lambda s: (s.get("weights") or {}).get("v3", 0) > 0, started)
        back_at = d.watch.seen(lambda s: s.get("phase") == "RolledBack", started)
        FIGURES.append(
            f"faulty v3: bad metrics (first traffic) to 100% stable in {back_at - bad_from:.1f}s "
            f"= {(back_at - bad_from) / INTERVAL_S:.1f} analysis intervals"
        )
        view = subprocess.run(
            [sys.executable, "-m", "kanaria", "status", "fraud", "-n", node_namespace,
             "--kubeconfig", str(d.cluster.kubeconfig)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert view.returncode == 0, view.stderr
        assert "RolledBack" in view.stdout
        assert "v2" in view.stdout

        contract.new_server_settings_replace_the_stable(target, "v2")
    finally:
        d.stop_client()
    assert d.client.stats.injected > 0  # the faulty version did fail, and was caught


def test_blue_green_switches_in_one_move_and_an_abort_switches_back_in_one(
    platform: Platform, node_namespace: str
) -> None:
    models = platform.models
    strategy = {"blueGreen": {"autoPromote": True, "scaleDownDelay": "10m"}}
    d = deploy(platform, node_namespace, node_md("bg", models.source("v1"), strategy))
    try:
        started = time.monotonic()
        patch_spec(d.cluster, node_namespace, "bg", {"model": models.source("v2")})
        d.wait(lambda s: (s.get("weights") or {}).get("v2") == 100, "the switch to v2")
        switched = time.monotonic()
        FIGURES.append(f"blue-green: v2 up at full size and switched in {switched - started:.1f}s")
        # The old version is kept warm; an abort now is a rollback in one switch.
        subprocess.run(
            [sys.executable, "-m", "kanaria", "abort", "bg", "-n", node_namespace,
             "--kubeconfig", str(d.cluster.kubeconfig)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        d.wait(lambda s: s.get("phase") == "RolledBack", "the abort")
        back = d.watch.seen(lambda s: (s.get("weights") or {}).get("v1") == 100, switched)
        FIGURES.append(f"blue-green abort: back on v1 {back - switched:.1f}s after the switch")
        moves = d.watch.weights_seen(started)
        assert moves[-3:] == [{"v1": 100, "v2": 0}, {"v1": 0, "v2": 100}, {"v1": 100}], moves
    finally:
        d.stop_client()


def test_a_shadow_is_compared_on_mirrored_copies_and_graduates(
    platform: Platform, node_namespace: str
) -> None:
    models = platform.models
    strategy = {
        "shadow": {
            "mirrorPercent": 100,
            "analysis": {"rounds": 2},
            "graduateTo": "canary",
            "canary": {"steps": [{"setWeight": 50}, {"analysis": {"rounds": 1}}]},
        }
    }
    gates = [
        {"name": "success-rate", "builtin": "successRate", "min": 0.95},
        {"name": "agreement", "builtin": "shadowAgreement", "min": 0.95, "stages": ["Mirroring"]},
    ]
    d = deploy(platform, node_namespace, node_md("sh", models.source("v1"), strategy, 1, gates))
    try:
        # A retrained model that agrees with the stable: the same weights, a new version.
        retrained = {**models.source("v1"), "version": "v1-retrained"}
        started = time.monotonic()
        patch_spec(d.cluster, node_namespace, "sh", {"model": retrained})
        d.wait(lambda s: s.get("stage") == "Mirroring" and bool(s.get("mirror")), "mirroring")
        status = d.wait(healthy_on("v1-retrained"), "the shadow graduated and was promoted")
        FIGURES.append(f"shadow: mirrored, graduated to canary, promoted in "
                       f"{time.monotonic() - started:.1f}s")  # fmt: skip
        agreed = d.watch.seen(
            lambda s: any(
                m.get("metric") == "agreement"
                and m.get("verdict") == "Successful"
                and m.get("version") == "v1-retrained"
                for m in s.get("measurements", [])
            ),
            started,
        )
        graduated = d.watch.seen(lambda s: s.get("stage") != "Mirroring" and bool(s.get("weight")))
        assert agreed < graduated  # judged on mirrored copies before any real traffic
        assert status["weights"] == {"v1-retrained": 100}
    finally:
        d.stop_client()
    # The shadow's answers were compared, never returned: the client saw only v1
    # until the canary step sent it real traffic.
    assert d.client.stats.by_version["v1"] > 0


def test_operator_and_stable_pod_killed_mid_canary(platform: Platform, node_namespace: str) -> None:
    models = platform.models
    strategy = {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}]}}
    d = deploy(platform, node_namespace, node_md("steer", models.source("v1"), strategy, 2))
    try:
        patch_spec(d.cluster, node_namespace, "steer", {"model": models.source("v2")})
        paused = d.wait(lambda s: s.get("phase") == "Paused", "the pause step")
        weights = paused.get("weights")
        killed_at = time.monotonic()

        # The operator pod, killed: the new one resumes at the same step.
        operator = d.cluster.get_json(
            "pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/name=kanaria-operator"
        )["items"][0]["metadata"]["name"]
        d.cluster.kubectl("delete", "pod", operator, "-n", RELEASE_NAMESPACE,
                          "--grace-period=0", "--force")  # fmt: skip
        procs.wait_until(
            lambda: any(
                p["metadata"]["name"] != operator
                and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])
                for p in d.cluster.get_json(
                    "pods", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/name=kanaria-operator"
                )["items"]
            ),
            WAIT_S,
            "a new operator pod Ready",
            interval=0.5,
        )
        # A stable model-server pod, killed mid-canary: the router retries on the other.
        victim = sorted(d.model_pods("v1"))[0]
        d.cluster.kubectl("delete", "pod", victim, "-n", node_namespace,
                          "--grace-period=0", "--force")  # fmt: skip
        wait_for(d.cluster, "--for=condition=Available", "-n", node_namespace,
                 "deployment/steer-v1")  # fmt: skip
        sent = d.client.stats.ok + d.client.stats.failed
        procs.wait_until(
            lambda: d.client.stats.ok + d.client.stats.failed >= sent + 30,
            WAIT_S,
            "30 more client requests after the stable pod came back",
            interval=0.2,
        )

        # The promote is applied by the new operator, from the step the old one left:
        # the next weight is the step after the pause, never a restart from 0.
        subprocess.run(
            [sys.executable, "-m", "kanaria", "promote", "steer", "-n", node_namespace,
             "--kubeconfig", str(d.cluster.kubeconfig)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        d.wait(healthy_on("v2"), "v2 promoted after the pause")
        d.watch.seen(healthy_on("v2"), killed_at)
        moves = d.watch.weights_seen(killed_at)
        assert moves[0] == weights, moves
        assert moves[1] == {"v1": 40, "v2": 60}, moves
    finally:
        d.stop_client()


def test_an_automation_policy_change_reaches_the_router_pods_without_a_restart(
    platform: Platform, node_namespace: str
) -> None:
    """spec.automation on a cluster: the operator renders it into the routes ConfigMap,
    the router pods apply it on reload and every answer says automated or review (a
    header and a V2 parameter, the output kept as the suggestion). Moving from assist
    to partial restarts no pod and fails no client request."""
    doc = node_md("auto", platform.models.source("v1"), contract.CANARY)
    doc["spec"]["automation"] = {"mode": "assist", "threshold": 0.0}
    d = deploy(platform, node_namespace, doc)
    try:
        ip = service_ip(d.cluster, node_namespace, "auto")
        rows = np.random.default_rng(2).normal(size=(1, WIDTH)).astype(np.float32).tolist()
        body = {"inputs": [{"name": "input", "shape": [1, WIDTH], "datatype": "FP32",
                            "data": rows[0]}]}  # fmt: skip

        def decision() -> tuple[str | None, str | None]:
            r = httpx.post(f"http://{ip}/v2/models/auto/infer", json=body, timeout=10)
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["outputs"], answer  # the suggestion is always there
            params = answer.get("parameters") or {}
            return r.headers.get("x-kanaria-automation"), params.get("kanaria_automation")

        procs.wait_until(lambda: decision() == ("review", "review"), WAIT_S,
                         "assist: every answer for review", interval=0.5)  # fmt: skip
        pods = {
            p["metadata"]["uid"] for p in d.cluster.get_json("pods", "-n", node_namespace)["items"]
        }
        patch_spec(d.cluster, node_namespace, "auto",
                   {"automation": {"mode": "partial", "threshold": 0.0}})  # fmt: skip
        procs.wait_until(lambda: decision() == ("automated", "automated"), WAIT_S,
                         "partial at 0: every answer automated", interval=0.5)  # fmt: skip
        after = {
            p["metadata"]["uid"] for p in d.cluster.get_json("pods", "-n", node_namespace)["items"]
        }
        assert after == pods  # no pod restarted: the policy travels in the routes
    finally:
        d.stop_client()


def test_an_automation_ramp_on_real_pods_then_a_sliced_model_moves_back(
    platform: Platform, node_namespace: str
) -> None:
    """The degrees-of-automation scenario kanaria up runs too (tests/support/
    automation_stream.py), on pods: the gates read reviewer agreement, automation
    rate and success rate from the model-server pods through the real Prometheus.
    Reviewers work from the answers the client got marked for review and post labels
    through the Service's feedback API. A good model ramps assist -> 0.97 -> partial
    at 0.9 and is promoted; a model wrong on one slice is moved back to assist."""
    models = platform.models

    def document(version: str, model: str) -> dict[str, Any]:
        doc = node_md("ramp", models.source(version, model), auto.RAMP, metrics=auto.GATES)
        doc["spec"]["analysis"]["inconclusiveLimit"] = 100
        doc["spec"]["automation"] = dict(auto.POLICY)
        return doc

    d = deploy(platform, node_namespace, document("v1", "good"))
    ip = service_ip(d.cluster, node_namespace, "ramp")
    stream = auto.Stream(f"http://{ip}", "ramp", WIDTH).start()
    try:

        def apply(version: str, model: str) -> None:
            patch_spec(d.cluster, node_namespace, "ramp", document(version, model)["spec"])

        started = time.monotonic()
        auto.ramps_to_partial(apply, d.wait, stream, "v2")
        FIGURES.append(
            f"automation: v2 ramped to partial at 0.9 in {time.monotonic() - started:.1f}s"
        )
        started = time.monotonic()
        auto.sliced_model_moves_back(apply, d.wait, "v3")
        FIGURES.append(
            f"automation: sliced v3 moved back to assist in {time.monotonic() - started:.1f}s"
        )
        FIGURES.append(
            f"automation: {stream.answered} answers {stream.decisions}, {stream.labelled} labelled"
        )
    finally:
        stream.close()
        d.stop_client()
    with stream.lock:
        assert stream.answered > 0
        assert stream.failures == [], stream.failures[:5]


def test_a_version_that_cannot_load_leaves_the_stable_untouched_and_says_why(
    platform: Platform, node_namespace: str
) -> None:
    models = platform.models
    strategy = {"canary": {"steps": [{"setWeight": 50}]}}
    d = deploy(platform, node_namespace, node_md("broken", models.source("v1"), strategy))
    try:
        wrong = {**models.source("v2"), "sha256": "0" * 64}
        patch_spec(d.cluster, node_namespace, "broken", {"model": wrong})
        status = d.wait(lambda s: "cannot start" in (s.get("message") or ""), "the reason")
        assert "sha256" in status["message"], status["message"]
        assert status["weights"] == {"v1": 100, "v2": 0}
        events = d.cluster.get_json(
            "events", "-n", node_namespace, "--field-selector", "involvedObject.name=broken"
        )["items"]
        assert any(e["reason"] == "VersionNotReady" for e in events)

        missing_image = {
            "model": models.source("v3"),
            "server": {"image": "localhost/kanaria-no-such-image:1"},
        }
        patch_spec(d.cluster, node_namespace, "broken", missing_image)
        status = d.wait(lambda s: "ErrImageNeverPull" in (s.get("message") or ""), "the image")
        assert status["weights"] == {"v1": 100, "v3": 0}
    finally:
        d.stop_client()
