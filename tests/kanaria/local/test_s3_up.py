"""``kanaria up`` with an s3:// model: its model servers take the S3 settings from
``kanaria up``'s own environment (a real S3Proxy on 127.0.0.1), verify the SHA-256
and answer through the router; a version whose object is missing says why in status,
in the model server's words, while the stable version keeps serving."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kanaria.local.traffic import infer_body
from tests.kanaria.local.harness import NAME, WIDTH, Up, build_models, canary, md
from tests.support.s3server import BUCKET, S3Server, clean_aws_env, s3_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3proxy")) as server:
        yield server


def s3_model(version: str, uri: str, sha256: str | None = None) -> dict[str, object]:
    doc = md(version, Path("unused.onnx"), canary({"setWeight": 50}))
    doc["spec"]["model"] = {"version": version, "uri": uri}
    if sha256 is not None:
        doc["spec"]["model"]["sha256"] = sha256
    return doc


def test_kanaria_up_serves_a_model_from_s3_with_its_own_environment(
    up: Up, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_aws_env(monkeypatch)
    for name, value in s3.env().items():  # what a user exports before `kanaria up`
        monkeypatch.setenv(name, value)
    data = build_models(up.workdir / "models")["v1"].read_bytes()
    uri = s3.put("fraud/v1/model.onnx", data)

    up.start(s3_model("v1", uri, hashlib.sha256(data).hexdigest()))
    answer = httpx.post(
        f"{up.url}/v2/models/{NAME}/infer", json=infer_body(WIDTH, random.Random(0)), timeout=30
    )
    assert answer.status_code == 200, answer.text

    up.apply(s3_model("v2", f"s3://{BUCKET}/fraud/v2/model.onnx"))
    status = up.wait(
        "the reason v2 cannot start",
        lambda s: "v2 cannot start: exited with code 2" in (s.get("message") or ""),
    )
    assert f"no object 'fraud/v2/model.onnx' in bucket '{BUCKET}'" in status["message"]
    assert status["weights"] == {"v1": 100, "v2": 0}
