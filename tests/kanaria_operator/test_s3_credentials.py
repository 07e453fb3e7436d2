"""spec.model.credentialsSecret: the Secret's S3 keys reach the model-server container.

At the objects level: which keys, which are required, which versions get them. Against
the real API server: the CRD accepts the field and refuses a bad one naming it, the
Deployment's pod template with the Secret references is valid, and the running
operator's Deployment for an s3:// version carries them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from kanaria_operator import objects

from kanaria.api import LiveVersion, ModelDeploymentSpec, VersionRole
from tests.kanaria_operator.conftest import StartOperator
from tests.kanaria_operator.helpers import md
from tests.support import procs
from tests.support.controlplane import ControlPlane

OWNER = objects.Owner(name="fraud", namespace="ml", uid="0000-1111")
IMAGES = objects.Images(server="srv:1", router="rtr:1")
S3_URI = "s3://models/fraud/v2/model.onnx"
SECRET = "model-store"
SPEC = ModelDeploymentSpec.model_validate(
    {
        "model": {"version": "v2", "uri": S3_URI, "credentialsSecret": SECRET},
        "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
    }
)


def container_env(spec: ModelDeploymentSpec, live: LiveVersion) -> list[dict[str, Any]]:
    deployment = objects.version_deployment(OWNER, spec, live, IMAGES)
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def secret_refs(env: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}


def version(uri: str, role: VersionRole = VersionRole.candidate) -> LiveVersion:
    return LiveVersion(version="v2", uri=uri, role=role, replicas=1)


def test_an_s3_version_takes_the_secrets_keys_by_name() -> None:
    refs = secret_refs(container_env(SPEC, version(S3_URI)))
    assert set(refs) == {*objects.S3_REQUIRED_KEYS, *objects.S3_OPTIONAL_KEYS}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
            "AWS_ENDPOINT_URL", "S3_ENDPOINT", "S3_VERIFY_SSL"} <= set(refs)  # fmt: skip
    for key, ref in refs.items():
        assert ref["name"] == SECRET
        assert ref["key"] == key
        # Without the keys the pod must not start (CreateContainerConfigError names the
        # missing key in status); the rest are passed on when present.
        assert ref["optional"] is (key not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))


def test_the_secret_cannot_override_the_servers_own_settings() -> None:
    env = container_env(SPEC, version(S3_URI))
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert not any(n.startswith("KANARIA_") for n in secret_refs(env))
    container = objects.version_deployment(OWNER, SPEC, version(S3_URI), IMAGES)["spec"][
        "template"
    ]["spec"]["containers"][0]
    assert "envFrom" not in container


def test_a_version_read_from_s3_only_through_its_profile_gets_the_keys_too() -> None:
    live = version("https://m/v2.onnx").model_copy(
        update={"referenceProfile": "s3://models/fraud/v2/profile.json"}
    )
    assert set(secret_refs(container_env(SPEC, live))) >= set(objects.S3_REQUIRED_KEYS)


def test_an_https_version_and_a_spec_without_secret_get_no_keys() -> None:
    stable_on_https = version("https://m/v1.onnx", VersionRole.stable)
    assert secret_refs(container_env(SPEC, stable_on_https)) == {}
    no_secret = SPEC.model_copy(
        update={"model": SPEC.model.model_copy(update={"credentialsSecret": None})}
    )
    assert secret_refs(container_env(no_secret, version(S3_URI))) == {}


# ----------------------------------------------------------------- the real API server


def s3_md(name: str, **model: Any) -> dict[str, Any]:
    doc = md(name, {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    doc["spec"]["model"] = {"version": "v1", "uri": S3_URI, "credentialsSecret": SECRET, **model}
    return doc


def dry_run(cp: ControlPlane, namespace: str, doc: dict[str, Any]) -> tuple[int, str]:
    result = cp.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(doc), check=False,
    )  # fmt: skip
    return result.returncode, result.stderr


@pytest.mark.controlplane
def test_the_crd_accepts_credentials_secret(installed: ControlPlane, namespace: str) -> None:
    code, err = dry_run(installed, namespace, s3_md("fraud"))
    assert code == 0, err


@pytest.mark.controlplane
@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"credentialsSecret": "Model_Store"}, "spec.model.credentialsSecret"),
        ({"uri": "https://models.example.com/v1.onnx"},
         "spec.model.credentialsSecret: only s3:// URIs use it"),
        ({"uri": "s3://models"}, "spec.model.uri: an s3:// URI names a bucket and a key"),
        ({"referenceProfile": "s3://models/"},
         "spec.model.referenceProfile: an s3:// URI names a bucket and a key"),
    ],
    ids=["bad-secret-name", "secret-without-s3", "s3-without-key", "profile-without-key"],
)  # fmt: skip
def test_the_crd_refuses_a_bad_s3_model_naming_the_field(
    installed: ControlPlane, namespace: str, model: dict[str, Any], message: str
) -> None:
    code, err = dry_run(installed, namespace, s3_md("fraud", **model))
    assert code != 0
    assert message in err, err


@pytest.mark.controlplane
def test_the_pod_template_with_secret_references_is_valid(
    installed: ControlPlane, namespace: str
) -> None:
    owner = objects.Owner(name="fraud", namespace=namespace, uid="0000-1111")
    deployment = copy.deepcopy(objects.version_deployment(owner, SPEC, version(S3_URI), IMAGES))
    deployment["metadata"].pop("ownerReferences")  # no such owner in this namespace
    result = installed.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=yaml.safe_dump(deployment),
    )  # fmt: skip
    stored = json.loads(result.stdout)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert secret_refs(stored) == secret_refs(container_env(SPEC, version(S3_URI)))


@pytest.mark.controlplane
def test_the_operator_puts_the_secret_into_the_model_servers_environment(
    installed: ControlPlane, namespace: str, start_operator: StartOperator
) -> None:
    start_operator(namespace, f"l-{namespace}")
    installed.apply(s3_md("fraud"), namespace=namespace)
    name = objects.version_name("fraud", "v1")

    def deployment_exists() -> bool:
        got = installed.kubectl("get", "deployment", name, "-n", namespace, check=False)
        return got.returncode == 0

    procs.wait_until(deployment_exists, 60, f"deployment {name}", interval=0.5)
    container = installed.get_json("deployment", name, "-n", namespace)["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["KANARIA_MODEL"]["value"] == S3_URI
    refs = secret_refs(container["env"])
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": SECRET, "key": "AWS_ACCESS_KEY_ID",
                                         "optional": False}  # fmt: skip
    assert refs["AWS_SESSION_TOKEN"]["optional"] is True
