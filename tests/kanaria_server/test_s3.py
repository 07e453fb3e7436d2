"""s3:// models against a real S3-compatible server (S3Proxy on 127.0.0.1).

Through the real ``kanaria serve-model`` process: a model from S3 with the right
SHA-256 answers inference, the wrong SHA-256 is refused, and a missing key, a missing
bucket or refused credentials end the process with exit 2 and one line naming the
reason (the line the operator and ``kanaria up`` show), never a traceback. The other
settings (TLS verification, a custom CA, KServe's S3_ENDPOINT, no credentials at all,
an unreachable endpoint) through the loader the server calls, in this process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kanaria_server.errors import ModelLoadError
from kanaria_server.model import read_model_bytes

from tests.support.procs import free_port, kanaria, running
from tests.support.s3server import BUCKET, SECRET_KEY, S3Server, clean_aws_env, s3_server

BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.1] * 64}]}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3proxy")) as server:
        yield server


@pytest.fixture(autouse=True)
def _only_our_s3_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_aws_env(monkeypatch)


@pytest.fixture(scope="module")
def model_uri(s3: S3Server, mlp_path: Path) -> tuple[str, str]:
    """The MLP uploaded to the S3 server: (s3:// URI, its SHA-256)."""
    data = mlp_path.read_bytes()
    return s3.put("fraud/v1/model.onnx", data), hashlib.sha256(data).hexdigest()


def serve_to_exit(model: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``kanaria serve-model`` that is expected to give up; returns its result."""
    return subprocess.run(
        kanaria("serve-model", "--model", model, "--name", "m", "--port", str(free_port()),
                "--download-timeout-s", "30", *flags),
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **env},
    )  # fmt: skip


def exit_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line the server exits with (status and Events quote it)."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "cannot serve model" in ln]
    assert lines, done.stderr
    return lines[-1]


def test_model_from_s3_with_its_sha256_answers(
    s3: S3Server, model_uri: tuple[str, str], log_dir: Path
) -> None:
    uri, digest = model_uri
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = kanaria("serve-model", "--model", uri, "--sha256", digest, "--name", "fraud",
                   "--version", "v1", "--port", str(port))  # fmt: skip
    with running(args, log_dir, "s3", ready_url=f"{url}/v2/health/ready", timeout=90,
                 env=s3.env()):  # fmt: skip
        answer = httpx.post(f"{url}/v2/models/fraud/infer", json=BODY, timeout=30)
        assert answer.status_code == 200, answer.text
        (output,) = answer.json()["outputs"]
        assert output["shape"] == [1, 10]


def test_wrong_sha256_is_refused(s3: S3Server, model_uri: tuple[str, str]) -> None:
    uri, _ = model_uri
    line = exit_line(serve_to_exit(uri, s3.env(), "--sha256", "0" * 64))
    assert f"model {uri} has SHA-256" in line
    assert "refusing to serve a different file" in line


@pytest.mark.parametrize(
    ("uri", "env", "reason"),
    [
        (f"s3://{BUCKET}/fraud/v9/model.onnx", {},
         f"no object 'fraud/v9/model.onnx' in bucket '{BUCKET}'"),
        ("s3://no-such-bucket/fraud/v1/model.onnx", {}, "bucket 'no-such-bucket' does not exist"),
        (None, {"AWS_SECRET_ACCESS_KEY": "wrong"},
         "the secret key does not match the access key id (check AWS_SECRET_ACCESS_KEY)"),
        (None, {"AWS_ACCESS_KEY_ID": "nobody"},
         "the store does not know the access key id (check AWS_ACCESS_KEY_ID)"),
        (None, {"AWS_SKIP_SIGNATURE": "true"},
         f"access denied to bucket '{BUCKET}' key 'fraud/v1/model.onnx' "
         "(credentials: anonymous requests)"),
    ],
    ids=["missing-key", "missing-bucket", "wrong-secret", "unknown-key", "anonymous-denied"],
)  # fmt: skip
def test_fetch_failure_exits_with_the_reason(
    s3: S3Server,
    model_uri: tuple[str, str],
    uri: str | None,
    env: dict[str, str],
    reason: str,
) -> None:
    model = uri or model_uri[0]
    done = serve_to_exit(model, s3.env(**env))
    line = exit_line(done)
    assert f"cannot download model {model} from {s3.endpoint}: {reason}" in line
    assert SECRET_KEY not in done.stderr


def test_missing_reference_profile_on_s3_exits_with_the_reason(
    s3: S3Server, model_uri: tuple[str, str]
) -> None:
    profile = f"s3://{BUCKET}/fraud/v1/missing.profile.json"
    line = exit_line(serve_to_exit(model_uri[0], s3.env(), "--reference", profile))
    assert f"cannot download reference profile {profile}" in line
    assert "no object 'fraud/v1/missing.profile.json'" in line


# ----------------------------------------------------------------- loader, in this process


def load(uri: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> bytes:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return read_model_bytes(uri, None, 30.0)


def test_tls_endpoint_with_its_ca_bundle(
    s3: S3Server, model_uri: tuple[str, str], mlp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3.env(AWS_ENDPOINT_URL=s3.tls_endpoint,
                        AWS_CA_BUNDLE=str(s3.ca_bundle))  # fmt: skip
    assert load(model_uri[0], env, monkeypatch) == mlp_path.read_bytes()


def test_tls_endpoint_with_verification_off(
    s3: S3Server, model_uri: tuple[str, str], mlp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3.env(AWS_ENDPOINT_URL=s3.tls_endpoint, S3_VERIFY_SSL="0")
    assert load(model_uri[0], env, monkeypatch) == mlp_path.read_bytes()


def test_untrusted_tls_certificate_says_how_to_trust_it(
    s3: S3Server, model_uri: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3.env(AWS_ENDPOINT_URL=s3.tls_endpoint)
    with pytest.raises(ModelLoadError) as caught:
        load(model_uri[0], env, monkeypatch)
    assert "the endpoint's TLS certificate is not trusted (UnknownIssuer): set AWS_CA_BUNDLE" in (
        str(caught.value)
    )


def test_kserve_s3_endpoint_variables(
    s3: S3Server, model_uri: tuple[str, str], mlp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3.env(S3_ENDPOINT=s3.endpoint.removeprefix("http://"), S3_USE_HTTPS="0")
    del env["AWS_ENDPOINT_URL"]
    assert load(model_uri[0], env, monkeypatch) == mlp_path.read_bytes()


def test_no_credentials_at_all(
    s3: S3Server, model_uri: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3.env()
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    with pytest.raises(ModelLoadError) as caught:
        load(model_uri[0], env, monkeypatch)
    message = str(caught.value)
    assert "no usable credentials (no AWS_ACCESS_KEY_ID set, so instance metadata;" in message
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message


def test_unreachable_endpoint(
    s3: S3Server, model_uri: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"http://127.0.0.1:{s3.closed_port}"
    with pytest.raises(ModelLoadError) as caught:
        load(model_uri[0], s3.env(AWS_ENDPOINT_URL=closed), monkeypatch)
    assert f"from {closed}: cannot reach the endpoint (Connection refused)" in str(caught.value)


@pytest.mark.parametrize("uri", ["s3://models", "s3://models/", "s3:///model.onnx"])
def test_uri_without_bucket_or_key(uri: str) -> None:
    with pytest.raises(ModelLoadError, match="must name a bucket and a key"):
        read_model_bytes(uri, None, 5.0)
