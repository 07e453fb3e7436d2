"""Rollouts end to end: real API server, real operator process, real Prometheus.

The router and model-server pods cannot run here (kwok fakes the kubelet: pods
are Running and Ready but no container runs), so a test exporter stands in for
their metrics: the test sets what it exports, a real Prometheus scrapes it, and
the operator's gates query that Prometheus as they would in a cluster.
"""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest
import yaml

from tests.kanaria_operator.conftest import Metrics, StartOperator
from tests.kanaria_operator.helpers import (
    INTERVAL,
    WAIT_S,
    change_model,
    command,
    deploy,
    events,
    healthy_on,
    md,
    owned_objects,
    phase_is,
    reasons,
    wait_status,
)
from tests.support import procs
from tests.support.controlplane import ControlPlane

pytestmark = [pytest.mark.controlplane, pytest.mark.prometheus, pytest.mark.slow]


def traffic(
    namespace: str, model: str, version: str, ok: float, errors: float = 0.0
) -> list[dict[str, Any]]:
    """Request counters of one version, ``ok`` 200s and ``errors`` 500s per second, as
    the router (client traffic) and the model server (infer requests, mirrored and
    preview copies included) export them."""
    labels = {"namespace": namespace, "model": model, "version": version}
    out: list[dict[str, Any]] = []
    for code, rate in (("200", ok), ("500", errors)):
        if rate:
            out.append(
                {
                    "name": "kanaria_router_requests_total",
                    "labels": {**labels, "code": code},
                    "rate": rate,
                }
            )
            out.append(
                {
                    "name": "kanaria_server_requests_total",
                    "labels": {**labels, "code": code, "endpoint": "infer"},
                    "rate": rate,
                }
            )
    return out  # fmt: skip


def comparisons(
    namespace: str, model: str, version: str, agree: float, disagree: float
) -> list[dict[str, Any]]:
    """Shadow comparison counters of a shadow version against the stable one."""
    labels = {"namespace": namespace, "model": model, "version": version, "baseline": "v1"}
    return [
        {"name": "kanaria_shadow_comparisons_total", "labels": {**labels, "result": r}, "rate": v}
        for r, v in (("agree", agree), ("disagree", disagree))
        if v
    ]


def routes(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    cm = cp.get_json("configmap", f"{name}-routes", "-n", namespace)
    doc: dict[str, Any] = yaml.safe_load(cm["data"]["routes.yaml"])["models"][name]
    return doc


def weights(cp: ControlPlane, namespace: str, name: str) -> dict[str, float]:
    return {v: b.get("weight", 0) for v, b in routes(cp, namespace, name)["versions"].items()}


CANARY = {
    "canary": {
        "steps": [
            {"setWeight": 20},
            {"pause": {"duration": "1s"}},
            {"setWeight": 50},
            {"analysis": {"rounds": 1}},
            {"setWeight": 80},
        ]
    }
}


def test_canary_good_values_walk_every_step_to_promotion(
    installed: ControlPlane, namespace: str, metrics: Metrics, start_operator: StartOperator
) -> None:
    op = start_operator(namespace, f"l-{namespace}", metrics.prometheus_url)
    name = deploy(installed, namespace, md("canary-good", CANARY))
    metrics.set(traffic(namespace, name, "v2", ok=40) + traffic(namespace, name, "v1", ok=40))
    change_model(installed, namespace, name, "v2")
    seen = wait_status(installed, namespace, name, lambda s: s.get("weight", 0) > 0, "traffic")
    assert seen["candidate"]["version"] == "v2"
    assert seen["weights"] == {"v1": 80, "v2": 20}
    wait_status(installed, namespace, name, healthy_on("v2"), "v2 promoted")

    all_events = events(installed, namespace, name)
    steps = [e["message"] for e in all_events if e["reason"] == "StepAdvanced"]
    # Events carry whole seconds, so several in one second have no order: compare sets.
    assert sorted(m.split(",")[0] for m in steps) == [f"step {i}/5" for i in range(1, 6)]
    assert reasons(installed, namespace, name).count("Promoted") == 1
    assert "RolledBack" not in reasons(installed, namespace, name)
    st = wait_status(
        installed, namespace, name, lambda s: len(s.get("versions", [])) == 1, "v1 dropped"
    )
    assert st["weights"] == {"v2": 100}
    assert st["observedGeneration"] == 2
    assert all(m["verdict"] == "Successful" for m in st["measurements"] if m["version"] == "v2")

    def only_v2() -> bool:
        return ("Deployment", f"{name}-v1") not in owned_objects(installed, namespace, name)

    procs.wait_until(only_v2, 60, "the v1 Deployment to be deleted", 0.5)
    assert weights(installed, namespace, name) == {"v2": 100}
    assert op.metric("kanaria_rollout_transitions_total", event="Promoted") == 1
    assert op.metric("kanaria_analysis_measurements_total", verdict="Successful") >= 2
    assert op.metric("kanaria_rollout_phase", model=name, phase="Healthy") == 1


def test_canary_bad_values_roll_back(
    installed: ControlPlane, namespace: str, metrics: Metrics, start_operator: StartOperator
) -> None:
    op = start_operator(namespace, f"l-{namespace}", metrics.prometheus_url)
    name = deploy(installed, namespace, md("canary-bad", CANARY))
    metrics.set(traffic(namespace, name, "v2", ok=20, errors=20))
    change_model(installed, namespace, name, "v2")
    st = wait_status(installed, namespace, name, phase_is("RolledBack"), "rollback")
    assert st["stable"]["version"] == "v1"
    assert st["weights"] == {"v1": 100}
    failed = [m for m in st["measurements"] if m["verdict"] == "Failed"]
    assert failed
    assert failed[-1]["value"] == pytest.approx(0.5, abs=0.1)
    assert 'kanaria_router_requests_total{model="canary-bad",version="v2"' in failed[-1]["query"]
    assert weights(installed, namespace, name)["v1"] == 100
    assert "Promoted" not in reasons(installed, namespace, name)
    warnings = [e for e in events(installed, namespace, name) if e["reason"] == "RolledBack"]
    assert warnings[0]["type"] == "Warning"
    assert op.metric("kanaria_rollout_transitions_total", event="RolledBack") == 1
    assert op.metric("kanaria_rollout_phase", model=name, phase="RolledBack") == 1


def test_canary_without_data_holds_then_resumes(
    installed: ControlPlane, namespace: str, metrics: Metrics, start_operator: StartOperator
) -> None:
    start_operator(namespace, f"l-{namespace}", metrics.prometheus_url)
    doc = md("canary-nodata", CANARY)
    doc["spec"]["analysis"]["inconclusiveLimit"] = 2
    name = deploy(installed, namespace, doc)
    metrics.set([])  # nothing for v2: every round is Inconclusive
    change_model(installed, namespace, name, "v2")
    st = wait_status(installed, namespace, name, phase_is("Paused"), "an inconclusive pause")
    assert st["pauseReason"] == "InconclusiveAnalysis"
    inconclusive = [m for m in st["measurements"] if m["verdict"] == "Inconclusive"]
    assert len(inconclusive) >= 3
    # Held at the first weight: missing data never moves traffic up. (The pause
    # step after it moves no traffic, so the rollout may sit on it.)
    assert st["weights"] == {"v1": 80, "v2": 20}
    assert st["currentStep"] in (0, 1)
    assert weights(installed, namespace, name) == {"v1": 80, "v2": 20}

    metrics.set(traffic(namespace, name, "v2", ok=40))
    command(installed, namespace, name, "resume")
    wait_status(installed, namespace, name, healthy_on("v2"), "promotion after resume")
    assert "Resumed" in reasons(installed, namespace, name)


BLUE_GREEN = {
    "blueGreen": {
        "autoPromote": True,
        "mirrorPercent": 50,
        "prePromotionAnalysis": {"rounds": 1},
        "postPromotionAnalysis": {"rounds": 2},
        "scaleDownDelay": "4s",
    }
}


def test_blue_green_switches_on_good_values_and_back_on_bad(
    installed: ControlPlane, namespace: str, metrics: Metrics, start_operator: StartOperator
) -> None:
    start_operator(namespace, f"l-{namespace}", metrics.prometheus_url)
    name = deploy(installed, namespace, md("bluegreen", BLUE_GREEN))
    metrics.set(traffic(namespace, name, "v2", ok=40))
    change_model(installed, namespace, name, "v2")
    preview = wait_status(
        installed, namespace, name, lambda s: s.get("mirror") is not None, "mirrored preview"
    )
    assert preview["weights"] == {"v1": 100, "v2": 0}
    # The candidate runs at full size before it gets any traffic.
    v2 = next(v for v in preview["versions"] if v["version"] == "v2")
    assert v2["replicas"] == 2
    assert routes(installed, namespace, name)["mirror"] == {"version": "v2", "percent": 50}
    switched = wait_status(
        installed, namespace, name, lambda s: s.get("weights") == {"v1": 0, "v2": 100}, "switch"
    )
    assert {v["version"] for v in switched["versions"]} == {"v1", "v2"}  # old one kept warm
    metrics.set(traffic(namespace, name, "v2", ok=10, errors=30))
    st = wait_status(installed, namespace, name, phase_is("RolledBack"), "switch back")
    assert st["weights"] == {"v1": 100}
    assert weights(installed, namespace, name)["v1"] == 100
    assert "Switched" in reasons(installed, namespace, name)

    metrics.set(traffic(namespace, name, "v3", ok=40))
    change_model(installed, namespace, name, "v3")
    wait_status(installed, namespace, name, healthy_on("v3"), "v3 promoted")
    assert reasons(installed, namespace, name).count("Promoted") == 1


SHADOW = {
    "shadow": {
        "mirrorPercent": 100,
        "analysis": {"rounds": 2},
        "graduateTo": "canary",
        "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]},
    }
}


def test_shadow_graduates_on_agreement_and_rolls_back_on_disagreement(
    installed: ControlPlane, namespace: str, metrics: Metrics, start_operator: StartOperator
) -> None:
    start_operator(namespace, f"l-{namespace}", metrics.prometheus_url)
    doc = md("shadow", SHADOW)
    doc["spec"]["analysis"]["metrics"] = [
        {"name": "agreement", "builtin": "shadowAgreement", "min": 0.9},
        {"name": "success-rate", "builtin": "successRate", "min": 0.95},
    ]
    name = deploy(installed, namespace, doc)
    metrics.set(
        comparisons(namespace, name, "v2", agree=40, disagree=0)
        + traffic(namespace, name, "v2", ok=40)
    )
    change_model(installed, namespace, name, "v2")
    shadowing = wait_status(
        installed, namespace, name, lambda s: s.get("mirror") is not None, "mirroring"
    )
    assert shadowing["weights"]["v2"] == 0  # a shadow's answers are never returned
    assert routes(installed, namespace, name)["mirror"] == {"version": "v2", "percent": 100}
    wait_status(installed, namespace, name, healthy_on("v2"), "graduated and promoted")
    assert "Graduated" in reasons(installed, namespace, name)

    metrics.set(
        comparisons(namespace, name, "v3", agree=10, disagree=30)
        + traffic(namespace, name, "v3", ok=40)
    )
    change_model(installed, namespace, name, "v3")
    st = wait_status(installed, namespace, name, phase_is("RolledBack"), "disagreement rollback")
    assert st["stable"]["version"] == "v2"
    assert st["weights"] == {"v2": 100}
    bad = [m for m in st["measurements"] if m["metric"] == "agreement" and m["version"] == "v3"]
    assert bad[-1]["verdict"] == "Failed"


MANUAL = {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}]}}


def test_restarted_operator_resumes_at_the_same_step(
    installed: ControlPlane, namespace: str, start_operator: StartOperator, log_dir: Any
) -> None:
    first = start_operator(namespace, f"l-{namespace}")
    name = deploy(installed, namespace, md("restart", MANUAL, analysis={"interval": "1s"}))
    change_model(installed, namespace, name, "v2")
    paused = wait_status(installed, namespace, name, phase_is("Paused"), "the manual pause")
    assert (paused["currentStep"], paused["weights"]) == (1, {"v1": 70, "v2": 30})
    first.proc.signal(9)  # SIGKILL mid-rollout: no clean shutdown, no lease release
    first.proc.popen.wait(10)

    second = start_operator(namespace, f"l-{namespace}")
    procs.wait_until(
        lambda: second.metric("kanaria_decision_duration_seconds_count") >= 3,
        120,
        "the new operator to take the lease and run passes",
        0.5,
    )
    st = wait_status(installed, namespace, name, phase_is("Paused"), "still paused")
    assert (st["currentStep"], st["weights"]) == (1, {"v1": 70, "v2": 30})
    assert st["stepStartedAt"] == paused["stepStartedAt"]
    assert reasons(installed, namespace, name).count("RolloutStarted") == 1

    # `kanaria promote` on a cluster writes the command annotation (kanaria.control_cli).
    cli = subprocess.run(
        [*procs.kanaria("promote", name, "-n", namespace, "--kubeconfig",
                        str(installed.kubeconfig))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "applied" in cli.stdout
    wait_status(installed, namespace, name, healthy_on("v2"), "promotion after promote")
    final = wait_status(installed, namespace, name, lambda s: bool(s.get("lastCommand")), "nonce")
    assert final["lastCommand"] in cli.stdout
    assert "ManualPromote" in reasons(installed, namespace, name)


def test_two_operators_do_not_both_act(
    installed: ControlPlane, namespace: str, start_operator: StartOperator
) -> None:
    lease = f"l-{namespace}"
    a = start_operator(namespace, lease, identity="op-a", wait=False)
    b = start_operator(namespace, lease, identity="op-b", wait=False)
    doc = md("pair", {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}},
             analysis={"interval": "1s"})  # fmt: skip
    name = deploy(installed, namespace, doc)
    holder = installed.get_json("lease", lease, "-n", "kanaria-system")["spec"]["holderIdentity"]
    leader, standby = (a, b) if holder == "op-a" else (b, a)
    assert holder == leader.identity
    assert leader.metric("kanaria_rollout_transitions_total", event="Deployed") == 1
    assert standby.metric("kanaria_decision_duration_seconds_count") == 0
    assert standby.metric("kanaria_rollout_transitions_total") == 0

    leader.proc.stop()  # SIGTERM: the lease is released, the standby takes over at once
    change_model(installed, namespace, name, "v2")
    wait_status(installed, namespace, name, healthy_on("v2"), "promotion by the standby")
    assert standby.metric("kanaria_rollout_transitions_total", event="Promoted") == 1
    holder = installed.get_json("lease", lease, "-n", "kanaria-system")["spec"]["holderIdentity"]
    assert holder == standby.identity


def test_problems_only_the_operator_sees_become_conditions_and_events(
    installed: ControlPlane, namespace: str, start_operator: StartOperator
) -> None:
    op = start_operator(namespace, f"l-{namespace}", extra_env={"KANARIA_CHECK_MODEL_URIS": "true"})
    closed = procs.free_port()
    doc = md("unreachable", MANUAL)
    doc["spec"]["model"]["uri"] = f"http://127.0.0.1:{closed}/model.onnx"
    installed.apply(doc, namespace=namespace)
    bad_quantity = copy.deepcopy(md("bad-quantity", MANUAL))
    bad_quantity["spec"]["resources"] = {"requests": {"cpu": "lots"}}
    installed.apply(bad_quantity, namespace=namespace)
    open_router = md("open-router", MANUAL)
    open_router["spec"]["router"] = {"auth": {"tokensFile": "tokens.txt"}}
    installed.apply(open_router, namespace=namespace)

    def invalid(reason: str) -> Any:
        return lambda s: any(
            c["type"] == "InvalidSpec" and c["status"] == "True" and c["reason"] == reason
            for c in s.get("conditions", [])
        )

    st = wait_status(installed, namespace, "unreachable", invalid("ModelUnreachable"), "condition")
    assert str(closed) in next(c for c in st["conditions"] if c["type"] == "InvalidSpec")["message"]
    st = wait_status(installed, namespace, "bad-quantity", invalid("ObjectRejected"), "condition")
    message = next(c for c in st["conditions"] if c["type"] == "InvalidSpec")["message"]
    assert "Deployment bad-quantity-v1" in message
    assert "quantities" in message
    assert "ObjectRejected" in reasons(installed, namespace, "bad-quantity")
    assert "ModelUnreachable" in reasons(installed, namespace, "unreachable")
    st = wait_status(installed, namespace, "open-router", invalid("AuthWithoutSecret"), "auth")
    assert (
        "set secretName"
        in next(c for c in st["conditions"] if c["type"] == "InvalidSpec")["message"]
    )
    # refused before acting: no router (or anything else) was created for it
    assert not installed.kubectl(
        "get", "deployments", "-n", namespace, "-l", "kanaria.io/model-deployment=open-router",
        "-o", "name",
    ).stdout.strip()  # fmt: skip

    installed.kubectl(
        "annotate", "modeldeployment", "unreachable", "-n", namespace,
        "kanaria.io/command=launch-rockets now",
    )  # fmt: skip
    procs.wait_until(
        lambda: "InvalidCommand" in reasons(installed, namespace, "unreachable"),
        60, "an InvalidCommand event", 0.5,
    )  # fmt: skip
    assert op.proc.alive()


def test_drift_on_stable_creates_one_retraining_job_at_a_time(
    installed: ControlPlane, namespace: str, metrics: Metrics, start_operator: StartOperator
) -> None:
    start_operator(namespace, f"l-{namespace}", metrics.prometheus_url)
    doc = md("drifting", MANUAL, analysis={"interval": INTERVAL})
    # The Job's pod can be scheduled nowhere, so the Job stays active (kwok would
    # otherwise complete it at once) and the next request must be skipped.
    pod = {
        "restartPolicy": "Never",
        "nodeSelector": {"kanaria.io/no-such-node": "true"},
        "containers": [{"name": "train", "image": "trainer:1"}],
    }
    doc["spec"]["retraining"] = {
        "metric": "inputDrift",
        "threshold": 0.2,
        "duration": "1s",
        "cooldown": "1s",
        "jobTemplate": {
            "metadata": {"labels": {"team": "ml"}},
            "spec": {"template": {"spec": pod}},
        },
    }
    drift = {
        "name": "kanaria_input_drift_psi",
        "labels": {"namespace": namespace, "model": "drifting", "version": "v1", "input": "x"},
        "value": 0.5,
    }
    # Drift is judged only on enough infer requests, so the stable version has traffic.
    metrics.set([drift, *traffic(namespace, "drifting", "v1", ok=40)])
    name = deploy(installed, namespace, doc)
    procs.wait_until(
        lambda: "RetrainingSkipped" in reasons(installed, namespace, name),
        WAIT_S, "a second retraining request to be skipped", 0.5,
    )  # fmt: skip
    jobs = installed.get_json("jobs", "-n", namespace)["items"]
    assert len(jobs) == 1
    assert jobs[0]["metadata"]["labels"]["team"] == "ml"
    assert jobs[0]["metadata"]["ownerReferences"][0]["name"] == name
    assert "RetrainingJobCreated" in reasons(installed, namespace, name)
    st = wait_status(installed, namespace, name, lambda s: True, "status")
    condition = next(c for c in st["conditions"] if c["type"] == "DriftDetected")
    assert condition["status"] == "True"
