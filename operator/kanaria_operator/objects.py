"""The Kubernetes objects of one ModelDeployment, as plain dicts.

Pure functions from (ModelDeployment identity, spec, live versions, images) to
manifests, so what the operator creates is unit-testable without a cluster and
the I/O layer only has to server-side-apply what these return. Every object
carries an owner reference to the ModelDeployment (garbage collection removes
them with it) and the ``app.kubernetes.io/*`` and ``kanaria.io/*`` labels.

Names: ``<md>`` is the ModelDeployment's name.

- ``<md>``                client-facing Service (selects the router pods)
- ``<md>-router``         router Deployment, ServiceAccount, Role, RoleBinding
- ``<md>-routes``         routes ConfigMap the router watches (key ``routes.yaml``)
- ``<md>-<version>``      Deployment and Service of one model version
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kanaria.api import (
    API_VERSION,
    KIND,
    LiveVersion,
    ModelDeploymentSpec,
)
from kanaria.durations import parse_duration
from kanaria.loop.identity import ARTIFACT_ANNOTATION, artifact_of, server_of
from kanaria.router_process import as_env, router_process_settings
from kanaria.routes import CONFIGMAP_KEY, RoutesConfig

MANAGER = "kanaria-operator"

LABEL_MD = "kanaria.io/model-deployment"
LABEL_VERSION = "kanaria.io/version"
LABEL_ROLE = "kanaria.io/role"
LABEL_COMPONENT = "app.kubernetes.io/component"
"""Manual command on the ModelDeployment: ``"<verb> <nonce>"`` (docs/contracts.md)."""

SERVER_PORT = 8080
ROUTER_PORT = 8080
TOKENS_KEY = "tokens"
"""Key of ``spec.router.auth.secretName`` that lists accepted bearer tokens, one per line."""
TOKENS_DIR = "/etc/kanaria/auth"
"""Where the router container sees that key, as the file ``tokens``."""
MAX_NAME = 63

DRAIN_SECONDS = 5
"""How long a serving pod keeps answering after it is told to stop (a preStop sleep).

The endpoint removal and kube-proxy's rule update race with the pod's SIGTERM: without
the pause, connections opened in that window reach a server that no longer listens and
the caller sees a 503 during an ordinary rolling update. Seen on the real node."""


def serving_rollout() -> dict[str, Any]:
    """A replaced pod template rolls one new pod at a time and never drops below the
    replica count (the default 25% unavailable would drop serving pods at four replicas)."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def drain() -> dict[str, Any]:
    """The serving container's lifecycle: keep answering for DRAIN_SECONDS after the stop."""
    return {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}}


@dataclass(frozen=True)
class Owner:
    """Identity of the ModelDeployment the objects belong to."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class Images:
    """Container images the operator deploys (settings: KANARIA_SERVER_IMAGE, ...)."""

    server: str
    router: str
    pull_policy: str = "IfNotPresent"


def child_name(owner: str, suffix: str) -> str:
    """``<owner>-<suffix>`` as a DNS-1035 label, shortened with a hash if too long.

    Versions may hold ``_``, ``.`` and capitals, which object names may not, so
    they are lowered and mapped to ``-``; a hash of the original keeps two
    versions that differ only there apart.
    """
    clean = re.sub(r"[^a-z0-9-]", "-", suffix.lower()).strip("-")
    name = f"{owner}-{clean}" if clean else owner
    if clean != suffix or len(name) > MAX_NAME:
        digest = hashlib.sha256(suffix.encode()).hexdigest()[:6]
        name = f"{name[: MAX_NAME - 7].rstrip('-')}-{digest}"
    return name


def version_name(owner: str, version: str) -> str:
    """Name of a version's Deployment and Service."""
    return child_name(owner, version)


def router_name(owner: str) -> str:
    return f"{owner}-router"[:MAX_NAME]


def routes_name(owner: str) -> str:
    return f"{owner}-routes"[:MAX_NAME]


def base_labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"kanaria-{component}",
        "app.kubernetes.io/instance": owner.name,
        LABEL_COMPONENT: component,
        "app.kubernetes.io/part-of": "kanaria",
        "app.kubernetes.io/managed-by": MANAGER,
        LABEL_MD: owner.name,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }


POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _env(values: Mapping[str, str | None]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items() if v is not None]


S3_REQUIRED_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""Keys of ``spec.model.credentialsSecret`` a model server needs: without them the pod
waits in CreateContainerConfigError naming the missing key, which status shows."""
S3_OPTIONAL_KEYS = (
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "S3_ENDPOINT",
    "S3_USE_HTTPS",
    "S3_VERIFY_SSL",
)
"""Keys of that Secret passed on when present (the variables kanaria_server.fetch_s3
reads, as KServe and Seldon name them)."""


def s3_credentials_env(secret: str) -> list[dict[str, Any]]:
    """Environment entries taking the S3 settings from the Secret ``secret``, key by key.

    Named keys (``secretKeyRef``) rather than ``envFrom``: a Secret can then hold
    nothing that overrides the server's own KANARIA_* settings. The variables are read
    once when the pod starts, which is when the model is fetched.
    """
    return [
        {
            "name": key,
            "valueFrom": {
                "secretKeyRef": {"name": secret, "key": key, "optional": key in S3_OPTIONAL_KEYS}
            },
        }
        for key in (*S3_REQUIRED_KEYS, *S3_OPTIONAL_KEYS)
    ]


def version_deployment(
    owner: Owner, spec: ModelDeploymentSpec, live: LiveVersion, images: Images
) -> dict[str, Any]:
    """Deployment running ``kanaria serve-model`` for one version, at ``live.replicas``."""
    name = version_name(owner.name, live.version)
    selector = {
        LABEL_MD: owner.name,
        LABEL_COMPONENT: "model-server",
        LABEL_VERSION: live.version,
    }
    pod_labels = {**base_labels(owner, "model-server"), **selector}
    # The role changes at promotion; it is on the Deployment, never on the pod
    # template, so promoting does not restart the pods.
    labels = {**pod_labels, LABEL_ROLE: live.role.value}
    server = server_of(live, spec)  # pinned per version (see ServerSpec)
    batching = server.batching
    env = _env(
        {
            "KANARIA_MODEL": live.uri,
            "KANARIA_NAME": owner.name,
            "KANARIA_VERSION": live.version,
            "KANARIA_SHA256": live.sha256,
            "KANARIA_REFERENCE": live.referenceProfile,
            "KANARIA_HOST": "0.0.0.0",
            "KANARIA_PORT": str(SERVER_PORT),
            "KANARIA_MAX_BATCH_SIZE": str(batching.maxBatchSize),
            "KANARIA_MAX_BATCH_DELAY_MS": f"{parse_duration(batching.maxBatchDelay) * 1000:g}",
            "XDG_CACHE_HOME": "/var/cache/kanaria",
        }
    )
    # Only versions read from S3 get the Secret: an http(s) stable version's pods are not
    # restarted (nor held up by a missing Secret) when a candidate moves to S3.
    if spec.model.credentialsSecret and any(
        (uri or "").startswith("s3://") for uri in (live.uri, live.referenceProfile)
    ):
        env.extend(s3_credentials_env(spec.model.credentialsSecret))
    container: dict[str, Any] = {
        "name": "model-server",
        "image": server.image or images.server,
        "imagePullPolicy": images.pull_policy,
        "args": ["serve-model", *server.args],
        "env": env,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 150,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": f"/v2/models/{owner.name}/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "securityContext": CONTAINER_SECURITY,
        "lifecycle": drain(),
        # A model that fails to load exits; its last log lines become the termination
        # message, which the operator puts in status and an Event.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "model-cache", "mountPath": "/var/cache/kanaria"},
        ],
    }
    if spec.resources is not None:
        container["resources"] = spec.resources.model_dump(exclude_none=True)
    meta = _meta(owner, name, labels)
    meta["annotations"] = {ARTIFACT_ANNOTATION: artifact_of(live, spec)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": live.replicas,
            "selector": {"matchLabels": selector},
            "strategy": serving_rollout(),
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(SERVER_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "model-cache", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def version_service(owner: Owner, version: str) -> dict[str, Any]:
    """ClusterIP Service in front of one version's model servers (the router's backend)."""
    selector = {LABEL_MD: owner.name, LABEL_COMPONENT: "model-server", LABEL_VERSION: version}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(
            owner,
            version_name(owner.name, version),
            {**base_labels(owner, "model-server"), LABEL_VERSION: version},
        ),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": SERVER_PORT, "targetPort": "http"}],
        },
    }


def version_url(owner: Owner, version: str) -> str:
    """In-cluster URL of a version's Service, as the router reaches it."""
    return (
        f"http://{version_name(owner.name, version)}.{owner.namespace}.svc.cluster.local:"
        f"{SERVER_PORT}"
    )


def routes_configmap(owner: Owner, routes: RoutesConfig) -> dict[str, Any]:
    """The routes document in the ConfigMap the router watches."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner, routes_name(owner.name), base_labels(owner, "router")),
        "data": {CONFIGMAP_KEY: routes.to_yaml()},
    }


def router_service_account(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(owner, router_name(owner.name), base_labels(owner, "router")),
    }


def router_role(owner: Owner) -> dict[str, Any]:
    """Lets the router read and watch its one ConfigMap, nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(owner, router_name(owner.name), base_labels(owner, "router")),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [routes_name(owner.name)],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }


def router_role_binding(owner: Owner) -> dict[str, Any]:
    name = router_name(owner.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(owner, name, base_labels(owner, "router")),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def review_token_env(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """The Label Studio review sink's API token for the router, from its Secret's
    ``token`` key into the variable the routes document names (tokenEnv); none without
    a Label Studio sink with a tokenSecret."""
    review = spec.automation.review if spec.automation is not None else None
    studio = review.labelStudio if review is not None else None
    if studio is None or studio.tokenSecret is None:
        return []
    ref = {"name": studio.tokenSecret, "key": "token"}
    return [{"name": studio.tokenEnv, "valueFrom": {"secretKeyRef": ref}}]


def router_deployment(
    owner: Owner, spec: ModelDeploymentSpec, images: Images, replicas: int = 1
) -> dict[str, Any]:
    """Deployment running ``kanaria route --configmap NS/<md>-routes``."""
    name = router_name(owner.name)
    selector = {LABEL_MD: owner.name, LABEL_COMPONENT: "router"}
    labels = {**base_labels(owner, "router"), **selector}
    env: list[dict[str, Any]] = _env(
        {
            "KANARIA_CONFIGMAP": f"{owner.namespace}/{routes_name(owner.name)}",
            "KANARIA_HOST": "0.0.0.0",
            "KANARIA_PORT": str(ROUTER_PORT),
        }
    )
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    auth = spec.router.auth
    # A mounted file, not an env var from secretKeyRef: the kubelet refreshes a
    # Secret volume in place and the router re-reads the file, so rotating
    # tokens needs no restart (an env var is fixed when the pod starts).
    tokens_file = f"{TOKENS_DIR}/{TOKENS_KEY}" if auth is not None and auth.secretName else None
    env.extend(_env(as_env(router_process_settings(spec.router, tokens_file))))
    env.extend(review_token_env(spec))
    if auth is not None and auth.secretName:
        mounts.append({"name": "auth-tokens", "mountPath": TOKENS_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "auth-tokens",
                "secret": {
                    "secretName": auth.secretName,
                    "items": [{"key": TOKENS_KEY, "path": TOKENS_KEY}],
                    "defaultMode": 0o440,  # owner root, group fsGroup (the router's)
                },
            }
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, name, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": serving_rollout(),
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(ROUTER_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "router",
                            "image": images.router,
                            "imagePullPolicy": images.pull_policy,
                            "args": ["route"],
                            "env": env,
                            "ports": [
                                {"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/v2/health/live", "port": "http"},
                                "periodSeconds": 10,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/v2/health/ready", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "securityContext": CONTAINER_SECURITY,
                            "lifecycle": drain(),
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def client_service(owner: Owner) -> dict[str, Any]:
    """The Service clients call: named after the ModelDeployment, in front of the router."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, owner.name, base_labels(owner, "router")),
        "spec": {
            "selector": {LABEL_MD: owner.name, LABEL_COMPONENT: "router"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def retraining_job(owner: Owner, template: dict[str, Any], stamp: str) -> dict[str, Any]:
    """A Job from ``spec.retraining.jobTemplate`` (a JobTemplateSpec), named by ``stamp``."""
    meta = dict(template.get("metadata") or {})
    labels = {
        **(meta.get("labels") or {}),
        **base_labels(owner, "retraining"),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **_meta(owner, child_name(owner.name, f"retrain-{stamp}"), labels),
            "annotations": meta.get("annotations") or {},
        },
        "spec": template.get("spec") or {},
    }


def router_objects(owner: Owner, spec: ModelDeploymentSpec, images: Images) -> list[dict[str, Any]]:
    """The router and what it needs: its identity and rights, its Deployment, and the
    Service clients call."""
    return [
        router_service_account(owner),
        router_role(owner),
        router_role_binding(owner),
        router_deployment(owner, spec, images),
        client_service(owner),
    ]


def desired_objects(
    owner: Owner,
    spec: ModelDeploymentSpec,
    versions: list[LiveVersion],
    routes: RoutesConfig,
    images: Images,
) -> list[dict[str, Any]]:
    """Every object that should exist for this ModelDeployment once ``versions`` run
    with ``routes`` (what the loop converges on; used to check selectors and RBAC)."""
    objects = [*router_objects(owner, spec, images), routes_configmap(owner, routes)]
    for live in versions:
        objects.append(version_deployment(owner, spec, live, images))
        objects.append(version_service(owner, live.version))
    return objects
