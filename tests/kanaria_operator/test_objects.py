"""The operator's pure parts: object builders, routes, command parsing, settings."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kanaria_operator import objects
from kanaria_operator.kubeio import merge_patch
from kanaria_operator.reconcile import (
    cluster_auth_problem,
    parse_command,
    pod_problem,
    set_condition,
    version_observation,
)
from kanaria_operator.settings import OperatorSettings

from kanaria.api import (
    LiveVersion,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ServerSpec,
    VersionRole,
)
from kanaria.loop.routes import build_routes
from kanaria.rollout import Command
from kanaria.routes import RoutesConfig

OWNER = objects.Owner(name="fraud", namespace="ml", uid="0000-1111")
IMAGES = objects.Images(server="srv:1", router="rtr:1")
SPEC = ModelDeploymentSpec.model_validate(
    {
        "model": {"version": "v2", "uri": "https://m/v2.onnx"},
        "replicas": 3,
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
        "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
        "router": {"stickyKey": {"header": "x-user-id"}},
    }
)


def live(version: str, role: VersionRole = VersionRole.stable, replicas: int = 3) -> LiveVersion:
    return LiveVersion(
        version=version, uri=f"https://m/{version}.onnx", role=role, replicas=replicas
    )


def test_child_names_are_dns_labels_and_stay_distinct() -> None:
    assert objects.version_name("fraud", "v2") == "fraud-v2"
    a = objects.version_name("fraud", "v1.0")
    b = objects.version_name("fraud", "v1-0")
    assert a != b
    assert a.startswith("fraud-v1-0-")
    long = objects.version_name("m" * 60, "version-with-a-long-name")
    assert len(long) <= 63
    assert long == long.lower()


def test_version_deployment_runs_the_server_settings_pinned_for_its_version() -> None:
    """spec.server now carries chaos flags for a new version; a version pinned to other
    settings keeps them, and one with none pinned (an older status) takes spec.server."""
    spec = SPEC.model_copy(
        update={"server": ServerSpec(args=["--chaos-error-rate", "0.5"], image="srv:2")}
    )
    pinned = live("v1").model_copy(update={"server": ServerSpec()})
    container = objects.version_deployment(OWNER, spec, pinned, IMAGES)["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["args"] == ["serve-model"]
    assert container["image"] == "srv:1"
    legacy = objects.version_deployment(OWNER, spec, live("v1"), IMAGES)["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert legacy["args"] == ["serve-model", "--chaos-error-rate", "0.5"]
    assert legacy["image"] == "srv:2"


def test_version_deployment_is_secure_probed_and_owned() -> None:
    d = objects.version_deployment(OWNER, SPEC, live("v2", VersionRole.candidate, 1), IMAGES)
    assert d["metadata"]["name"] == "fraud-v2"
    assert d["metadata"]["ownerReferences"][0] == {
        "apiVersion": "kanaria.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
        "uid": "0000-1111",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert d["metadata"]["labels"]["kanaria.io/role"] == "candidate"
    assert d["spec"]["replicas"] == 1
    pod = d["spec"]["template"]
    # The role must not be in the pod template: promotion would restart the pods.
    assert "kanaria.io/role" not in pod["metadata"]["labels"]
    assert d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["spec"]["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/models/fraud/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    assert c["args"][0] == "serve-model"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["KANARIA_MODEL"] == "https://m/v2.onnx"
    assert env["KANARIA_NAME"] == "fraud"
    assert env["KANARIA_VERSION"] == "v2"
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", "/var/cache/kanaria"}


def cluster_routes(status: ModelDeploymentStatus, ready: dict[str, bool]) -> RoutesConfig:
    """The shared routes builder with the versions' Service URLs, as the operator calls it."""
    names = [v.version for v in status.versions] or [SPEC.model.version]
    urls = {v: objects.version_url(OWNER, v) for v in names}
    routes = build_routes(OWNER.name, SPEC, status, urls, ready)
    assert routes is not None
    return routes


def test_every_object_has_owner_and_standard_labels() -> None:
    routes = cluster_routes(ModelDeploymentStatus(), {})
    objs = objects.desired_objects(OWNER, SPEC, [live("v1")], routes, IMAGES)
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    assert kinds == [
        ("ConfigMap", "fraud-routes"),
        ("Deployment", "fraud-router"),
        ("Deployment", "fraud-v1"),
        ("Role", "fraud-router"),
        ("RoleBinding", "fraud-router"),
        ("Service", "fraud"),
        ("Service", "fraud-v1"),
        ("ServiceAccount", "fraud-router"),
    ]
    for o in objs:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "kanaria"
        assert labels["app.kubernetes.io/managed-by"] == "kanaria-operator"
        assert labels["app.kubernetes.io/instance"] == "fraud"
        assert labels["kanaria.io/model-deployment"] == "fraud"
        assert o["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"
        assert o["metadata"]["namespace"] == "ml"


def test_router_reads_only_its_configmap() -> None:
    role = objects.router_role(OWNER)
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["fraud-routes"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    dep = objects.router_deployment(OWNER, SPEC, IMAGES)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KANARIA_CONFIGMAP"] == "ml/fraud-routes"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "fraud-router"
    svc = objects.client_service(OWNER)
    assert svc["metadata"]["name"] == "fraud"
    assert svc["spec"]["selector"] == {
        "kanaria.io/model-deployment": "fraud",
        "app.kubernetes.io/component": "router",
    }


def test_router_reads_bearer_tokens_from_the_mounted_secret_file() -> None:
    """The Secret's ``tokens`` key is a file the router re-reads, never an env var
    (fixed at pod start); without auth there is neither mount nor variable."""
    spec = ModelDeploymentSpec.model_validate(
        {**SPEC.model_dump(exclude_none=True), "router": {"auth": {"secretName": "fraud-tokens"}}}
    )
    pod = objects.router_deployment(OWNER, spec, IMAGES)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert "KANARIA_BEARER_TOKENS" not in env
    path = env["KANARIA_BEARER_TOKENS_FILE"]["value"]
    assert env["KANARIA_AUTH_HEADER"]["value"] == "Authorization"  # the spec's default
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "auth-tokens"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "auth-tokens"]
    assert volume["secret"]["secretName"] == "fraud-tokens"
    (item,) = volume["secret"]["items"]
    assert item["key"] == "tokens"
    assert path == f"{mount['mountPath']}/{item['path']}"
    # the file is readable by the router's group (fsGroup), by no one else
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]

    open_pod = objects.router_deployment(OWNER, SPEC, IMAGES)["spec"]["template"]["spec"]
    (open_c,) = open_pod["containers"]
    assert not {e["name"] for e in open_c["env"]} & {
        "KANARIA_BEARER_TOKENS",
        "KANARIA_BEARER_TOKENS_FILE",
    }
    assert [v["name"] for v in open_pod["volumes"]] == ["tmp"]

    keyed = ModelDeploymentSpec.model_validate(
        {
            **SPEC.model_dump(exclude_none=True),
            "router": {"auth": {"secretName": "fraud-tokens", "header": "X-Api-Key"}},
        }
    )
    (keyed_c,) = objects.router_deployment(OWNER, keyed, IMAGES)["spec"]["template"]["spec"][
        "containers"
    ]
    assert {"name": "KANARIA_AUTH_HEADER", "value": "X-Api-Key"} in keyed_c["env"]


def test_router_rate_limit_is_passed_as_settings() -> None:
    limited = ModelDeploymentSpec.model_validate(
        {
            **SPEC.model_dump(exclude_none=True),
            "router": {
                "rateLimit": {"requestsPerSecond": 2.5, "trustedProxies": ["10.0.0.0/8", "fd00::1"]}
            },
        }
    )
    (c,) = objects.router_deployment(OWNER, limited, IMAGES)["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["KANARIA_RATE_LIMIT_RPS"] == "2.5"
    assert env["KANARIA_RATE_LIMIT_BURST"] == "20"  # the spec's default
    assert env["KANARIA_TRUSTED_PROXIES"] == "10.0.0.0/8,fd00::1"
    (open_c,) = objects.router_deployment(OWNER, SPEC, IMAGES)["spec"]["template"]["spec"][
        "containers"
    ]
    assert not any(e["name"].startswith("KANARIA_RATE_LIMIT") for e in open_c["env"])


def test_routes_follow_status_weights_mirror_and_readiness() -> None:
    status = ModelDeploymentStatus(
        versions=[live("v1"), live("v2", VersionRole.candidate, 1)],
        weights={"v1": 70, "v2": 30},
        mirror={"version": "v2", "percent": 50},
    )
    routes = cluster_routes(status, {"v1": True, "v2": True})
    cm = objects.routes_configmap(OWNER, routes)
    parsed = RoutesConfig.from_yaml(cm["data"]["routes.yaml"])
    model = parsed.models["fraud"]
    assert {v: b.weight for v, b in model.versions.items()} == {"v1": 70, "v2": 30}
    assert str(model.versions["v2"].url) == "http://fraud-v2.ml.svc.cluster.local:8080/"
    assert model.mirror is not None
    assert model.mirror.percent == 50
    assert model.stickyKey is not None
    assert model.stickyKey.header == "x-user-id"
    assert parsed.revision == routes.revision
    assert parsed.revision.startswith("Pending/-/")  # phase/step/content digest
    again = cluster_routes(status, {"v1": True, "v2": False})
    assert again.revision != routes.revision  # readiness is content: a new revision


def test_routes_before_first_decision_and_with_nothing_ready() -> None:
    routes = cluster_routes(ModelDeploymentStatus(), {})
    backend = routes.models["fraud"].versions["v2"]
    assert backend.weight == 100
    # Nothing is ready yet: the only weighted version is still routed to, or the
    # router would have to reject the document.
    assert backend.ready is True
    status = ModelDeploymentStatus(
        versions=[live("v1"), live("v2", VersionRole.candidate, 1)], weights={"v1": 100, "v2": 0}
    )
    routes = cluster_routes(status, {"v1": True, "v2": False})
    assert routes.models["fraud"].versions["v2"].ready is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("promote abc123", Command(verb="promote", nonce="abc123")),
        ("promote-full n1", Command(verb="promote-full", nonce="n1")),
        ("abort  n2", Command(verb="abort", nonce="n2")),
        (None, None),
        ("", None),
    ],
)
def test_parse_command(value: str | None, expected: Command | None) -> None:
    assert parse_command(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("promote", "expected '<verb> <nonce>'"), ("launch n1", "unknown verb 'launch'")],
)
def test_parse_command_errors_name_the_problem(value: str, fragment: str) -> None:
    message = parse_command(value)
    assert isinstance(message, str)
    assert fragment in message
    assert "kanaria.io/command" in message


def test_version_observation_from_deployment_status() -> None:
    assert version_observation(None).ready is False
    not_yet: dict[str, Any] = {"status": {"replicas": 2}}
    assert version_observation(not_yet).ready is False
    up = {"status": {"readyReplicas": 2, "availableReplicas": 2}}
    assert version_observation(up).model_dump() == {
        "ready": True,
        "readyReplicas": 2,
        "problem": None,
    }


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    status: dict[str, Any] = {}
    set_condition(status, "InvalidSpec", True, "ModelUnreachable", "x", t0)
    set_condition(status, "InvalidSpec", True, "ModelUnreachable", "y", t0 + timedelta(60))
    (c,) = status["conditions"]
    assert c["lastTransitionTime"].startswith("2026-01-01T00:00:00")
    assert c["message"] == "y"


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANARIA_NAMESPACES", "ml, team-b")
    monkeypatch.setenv("KANARIA_PROMETHEUS_URL", "http://prom:9090")
    monkeypatch.setenv("KANARIA_RESYNC_INTERVAL_S", "2")
    s = OperatorSettings()
    assert s.namespaces == ["ml", "team-b"]
    assert s.prometheus_url == "http://prom:9090"
    assert s.resync_interval_s == 2
    with pytest.raises(ValueError, match="resync_interval_s"):
        OperatorSettings(resync_interval_s=0)


def test_retraining_job_from_template() -> None:
    template = {
        "metadata": {"labels": {"team": "ml"}},
        "spec": {"template": {"spec": {"containers": [{"name": "t", "image": "trainer:1"}]}}},
    }
    job = objects.retraining_job(OWNER, template, "20260101000000")
    assert job["kind"] == "Job"
    assert job["metadata"]["labels"]["team"] == "ml"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "retraining"
    assert job["spec"] == template["spec"]
    assert yaml.safe_dump(job)  # serialisable as-is


def test_status_merge_patch_removes_dropped_keys_at_every_depth() -> None:
    old = {"weights": {"v1": 20, "v2": 80}, "mirror": {"version": "v2"}, "phase": "Progressing"}
    new = {"weights": {"v2": 100}, "phase": "Healthy"}
    patch = merge_patch(old, new)
    assert patch == {"weights": {"v1": None, "v2": 100}, "mirror": None, "phase": "Healthy"}


def test_auth_without_a_secret_is_a_cluster_problem() -> None:
    def spec(router: dict[str, object]) -> ModelDeploymentSpec:
        return ModelDeploymentSpec.model_validate(
            {**SPEC.model_dump(exclude_none=True), "router": router}
        )

    assert cluster_auth_problem(SPEC) is None
    assert cluster_auth_problem(spec({"auth": {"secretName": "tokens"}})) is None
    problem = cluster_auth_problem(spec({"auth": {"tokensFile": "t.txt"}}))
    assert problem is not None
    assert "spec.router.auth: set secretName" in problem
    assert cluster_auth_problem(spec({"auth": {"header": "X-Api-Key"}})) is not None


def test_pod_problem_names_the_reason_a_version_cannot_start() -> None:
    crashing = {
        "status": {
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "message": "INFO: started\nERROR model error: sha256 mismatch\n",
                        }
                    },
                }
            ]
        }
    }
    starting = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "Pulling"}}}]}}
    assert pod_problem([starting]) is None
    assert pod_problem([starting, crashing]) == (
        "exited with code 1: ERROR model error: sha256 mismatch"
    )
    between_crashes = {"status": {"containerStatuses": [{
        "ready": False, "restartCount": 3, "state": {"running": {}},
        "lastState": crashing["status"]["containerStatuses"][0]["lastState"]}]}}  # fmt: skip
    assert pod_problem([between_crashes]) == pod_problem([crashing])  # no flapping reason
    never = {"status": {"containerStatuses": [{"state": {"waiting": {
        "reason": "ErrImageNeverPull", "message": "image x:1 is not present"}}}]}}  # fmt: skip
    assert pod_problem([never]) == "ErrImageNeverPull (image x:1 is not present)"
    unready = {"status": {"readyReplicas": 0}, "spec": {}}
    assert version_observation(unready, [never]).problem == pod_problem([never])
    ready = {"status": {"readyReplicas": 1, "availableReplicas": 1}}
    assert version_observation(ready, [never]).problem is None


def test_router_gets_the_label_studio_token_from_its_secret() -> None:
    """A Label Studio review sink's token reaches the router as the variable the routes
    name (secretKeyRef), never through the routes document; no sink, no variable."""
    spec = ModelDeploymentSpec.model_validate(
        {
            **SPEC.model_dump(exclude_none=True),
            "automation": {
                "review": {
                    "labelStudio": {
                        "url": "http://label-studio:8080",
                        "project": "fraud review",
                        "classes": ["legit", "fraud"],
                        "tokenSecret": "ls-token",
                    }
                }
            },
        }
    )
    (c,) = objects.router_deployment(OWNER, spec, IMAGES)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["LABEL_STUDIO_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "ls-token", "key": "token"}
    }
    (plain,) = objects.router_deployment(OWNER, SPEC, IMAGES)["spec"]["template"]["spec"][
        "containers"
    ]
    assert "LABEL_STUDIO_TOKEN" not in {e["name"] for e in plain["env"]}
