"""The operator's error model: spec errors become InvalidSpec, temporary ones are
retried with backoff and said once in an Event. The temporary case runs against the
real API server, with a ServiceAccount that may read its ModelDeployment and post
Events but not list Deployments (a forbidden call, as after a missing RBAC rule)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from kanaria_operator.errors import BACKOFF_S, SpecError, TemporaryError, backoff, classify
from kanaria_operator.kubeio import Kube, load_api_client
from kanaria_operator.objects import Images, Owner
from kanaria_operator.reconcile import Reconciler
from kubernetes.dynamic.exceptions import DynamicApiError

from kanaria.api import Measurement, Verdict
from kanaria.rollout import MeasurementRequest
from tests.kanaria_operator.helpers import md, reasons
from tests.support.controlplane import ControlPlane
from tests.support.procs import wait_until


class _ApiError(DynamicApiError):
    """A DynamicApiError with a status, as the client raises it (no HTTP needed)."""

    def __init__(self, status: int) -> None:
        Exception.__init__(self, f"HTTP {status}")
        self.status = status

    def summary(self) -> str:
        return f"HTTP {self.status} from the API server"


def test_failures_are_classified_by_what_happens_next() -> None:
    assert classify(_ApiError(409)).reason == "ApiConflict"
    assert classify(_ApiError(403)).reason == "ApiForbidden"
    assert classify(_ApiError(503)).reason == "ApiUnavailable"
    assert classify(ConnectionRefusedError("refused")).reason == "ApiUnreachable"
    bug = classify(KeyError("x"))
    assert isinstance(bug, TemporaryError)
    assert bug.reason == "PassFailed"
    spec = SpecError("ObjectRejected", "no")
    assert classify(spec) is spec


def test_backoff_grows_and_stops_growing() -> None:
    assert [backoff(n) for n in range(1, 9)] == [*BACKOFF_S, BACKOFF_S[-1], BACKOFF_S[-1]]


def _measure(request: MeasurementRequest, owner: Owner, now: datetime) -> Measurement:
    return Measurement(
        metric=request.gate.name, version=request.version, verdict=Verdict.Error, time=now
    )


@pytest.mark.controlplane
def test_a_forbidden_call_backs_off_with_one_event_and_recovers(
    installed: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    installed.apply(md("limited", {"blueGreen": {}}), namespace=namespace)
    installed.kubectl("create", "serviceaccount", "limited", "-n", namespace)
    installed.kubectl(
        "create", "role", "limited", "-n", namespace,
        "--verb=get,list,watch,patch", "--resource=modeldeployments.kanaria.io",
    )  # fmt: skip
    installed.kubectl(
        "create", "role", "events", "-n", namespace, "--verb=create,patch", "--resource=events"
    )
    for role in ("limited", "events"):
        installed.kubectl(
            "create", "rolebinding", f"{role}-binding", "-n", namespace,
            f"--role={role}", f"--serviceaccount={namespace}:limited",
        )  # fmt: skip
    token = installed.kubectl("create", "token", "limited", "-n", namespace).stdout.strip()
    config = yaml.safe_load(installed.kubeconfig.read_text())
    config["users"] = [{"name": "limited", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "limited"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    reconciler = Reconciler(
        Kube(load_api_client(kubeconfig)),
        Images(server="example.com/server:1", router="example.com/router:1"),
        _measure,
        resync_interval_s=30.0,
        check_model_uris=False,
        clock=lambda: datetime.now(UTC),
    )
    # The pass lists Deployments first, which this ServiceAccount may not do.
    delays = [reconciler.run_pass("limited", namespace) for _ in range(4)]
    assert delays == list(BACKOFF_S[:4])
    wait_until(
        lambda: reasons(installed, namespace, "limited").count("ApiForbidden") == 1,
        30,
        "the one ApiForbidden Event",
    )
    assert reasons(installed, namespace, "limited").count("ApiForbidden") == 1  # not four
    # Granted what the operator needs, the next pass succeeds and the backoff resets.
    installed.kubectl(
        "create", "rolebinding", "operator-rights", "-n", namespace,
        "--clusterrole=kanaria-operator", f"--serviceaccount={namespace}:limited",
    )  # fmt: skip

    def recovered() -> bool:
        reconciler.run_pass("limited", namespace)
        return reconciler._memory[(namespace, "limited")].failures == 0

    wait_until(recovered, 60, "a pass with the operator's rights", interval=0.5)
    status = installed.get_json("mdep", "limited", "-n", namespace).get("status") or {}
    assert status.get("stable", {}).get("version") == "v1"
