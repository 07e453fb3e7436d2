"""The operator answers the engine's Retrain action the way `kanaria up` does: it POSTs
the one RetrainRequested payload to spec.retraining.webhook (a real HTTP receiver on
127.0.0.1), then creates the Job from spec.retraining.jobTemplate; each outcome is an
Event. The reconciler's retraining path runs against the real API server, as the
operator's ServiceAccount."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kanaria_operator.kubeio import Kube, load_api_client
from kanaria_operator.objects import Images, Owner
from kanaria_operator.reconcile import ClusterWorld, Memory, Reconciler

from kanaria.api import Measurement, ModelDeploymentSpec, ModelDeploymentStatus
from kanaria.retraining import retrain_payload
from kanaria.rollout import Decision, MeasurementRequest, Retrain
from tests.kanaria.webhook_receiver import Receiver
from tests.kanaria_operator.helpers import events, md, owned_objects, reasons
from tests.support.controlplane import ControlPlane
from tests.support.procs import free_port

pytestmark = pytest.mark.controlplane

NAME = "drifty"
V1_URI = "https://models.example.com/v1.onnx"
JOB_TEMPLATE = {
    "spec": {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "train", "image": "example.com/train:1"}],
            }
        }
    }
}


def _not_measured(request: MeasurementRequest, owner: Owner, now: datetime) -> Measurement:
    raise AssertionError("the retraining path takes no measurements")


def applied(
    installed: ControlPlane, namespace: str, kubeconfig: Path, retraining: dict[str, Any]
) -> tuple[Reconciler, dict[str, Any], Owner, ModelDeploymentSpec]:
    """A ModelDeployment with ``retraining`` applied, and a reconciler acting as the
    operator's ServiceAccount, with what its retraining path takes."""
    installed.apply(md(NAME, {"blueGreen": {}}, retraining=retraining), namespace=namespace)
    kube = Kube(load_api_client(kubeconfig))
    reconciler = Reconciler(
        kube,
        Images(server="example.com/server:1", router="example.com/router:1"),
        _not_measured,
        resync_interval_s=30.0,
        check_model_uris=False,
    )
    obj = kube.get_model_deployment(NAME, namespace)
    assert obj is not None
    owner = Owner(name=NAME, namespace=namespace, uid=obj["metadata"]["uid"])
    return reconciler, obj, owner, ModelDeploymentSpec.model_validate(obj["spec"])


def test_the_operator_calls_the_webhook_with_the_payload_kanaria_up_sends(
    installed: ControlPlane, namespace: str, operator_kubeconfig: Path
) -> None:
    with Receiver() as receiver:
        retraining = {
            "metric": "inputDrift",
            "threshold": 0.2,
            "webhook": {"url": receiver.url, "headers": {"X-Token": "t0ken"}},
            "jobTemplate": JOB_TEMPLATE,
        }
        reconciler, obj, owner, spec = applied(
            installed, namespace, operator_kubeconfig, retraining
        )
        status = ModelDeploymentStatus.model_validate(
            {
                "phase": "Healthy",
                "stable": {"version": "v1", "uri": V1_URI},
                "versions": [{"version": "v1", "uri": V1_URI, "role": "stable", "replicas": 2}],
            }
        )
        now = datetime.now(UTC).replace(microsecond=0)
        action = Retrain(
            version="v1",
            metric="inputDrift",
            value=0.4,
            threshold=0.2,
            since=now - timedelta(minutes=10),
        )
        reconciler.clock = lambda: now
        ClusterWorld(reconciler, obj, owner, Memory(), {}).retrain(
            spec, Decision(status=status), action
        )

    assert receiver.bodies == [retrain_payload(NAME, namespace, action, V1_URI, now)]
    assert receiver.bodies[0]["kind"] == "RetrainRequested"
    assert receiver.headers[0]["X-Token"] == "t0ken"
    assert receiver.headers[0]["Content-Type"] == "application/json"
    seen = reasons(installed, namespace, NAME)
    assert "RetrainingWebhookCalled" in seen
    assert "RetrainingJobCreated" in seen
    assert any(kind == "Job" for kind, _ in owned_objects(installed, namespace, NAME))


def test_a_webhook_that_cannot_be_reached_is_a_warning_and_the_job_still_starts(
    installed: ControlPlane, namespace: str, operator_kubeconfig: Path
) -> None:
    retraining = {
        "threshold": 0.2,
        "webhook": {"url": f"http://127.0.0.1:{free_port()}/retrain", "timeout": "2s"},
        "jobTemplate": JOB_TEMPLATE,
    }
    reconciler, obj, owner, spec = applied(installed, namespace, operator_kubeconfig, retraining)
    now = datetime.now(UTC)
    action = Retrain(version="v1", metric="inputDrift", value=0.4, threshold=0.2, since=now)
    ClusterWorld(reconciler, obj, owner, Memory(), {}).retrain(
        spec, Decision(status=ModelDeploymentStatus()), action
    )
    failed = [
        e for e in events(installed, namespace, NAME) if e["reason"] == "RetrainingWebhookFailed"
    ]
    assert len(failed) == 1
    assert failed[0]["type"] == "Warning"
    assert "cannot call retraining webhook" in failed[0]["message"]
    assert "RetrainingJobCreated" in reasons(installed, namespace, NAME)
