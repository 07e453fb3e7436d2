"""One error model: every error path of a real server answers the same V2 shape.

Whatever fails (the request, the route, the model not loaded yet, an injected
fault), the caller gets a JSON body that is exactly ``{"error": "<message>"}``,
the status of the error's group, and its request id back, never a traceback.
The mapping itself (:func:`kanaria_server.errors.answer`) is checked directly
for what no request can provoke: a bug, and a client that went away.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kanaria_server import errors

from tests.kanaria_server.conftest import MODEL_NAME, Server, serve
from tests.support.procs import free_port, kanaria, running

ROW = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.1] * 64}]}
SERVER_PACKAGE = Path(errors.__file__).parent


def assert_v2_error(r: httpx.Response, status: int, fragment: str, request_id: str) -> None:
    """The one error shape: status, JSON content type, ``{"error": str}`` only, the id echoed."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    doc = r.json()
    assert list(doc) == ["error"], doc
    assert isinstance(doc["error"], str), doc
    assert fragment in doc["error"], doc
    assert "Traceback" not in r.text
    assert r.headers.get("x-request-id") == request_id, r.headers


# (case, method, path under the server, request kwargs, status, message fragment)
READY_SERVER_ERRORS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("infer-bad-json", "POST", "/v2/models/iris/infer", {"content": b"{"}, 400,
     "request body is not valid JSON"),
    ("infer-unknown-input", "POST", "/v2/models/iris/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}}, 400,
     "unknown input 'x'"),
    ("infer-encoding", "POST", "/v2/models/iris/infer",
     {"content": b"{}", "headers": {"content-encoding": "br"}}, 400,
     "unsupported Content-Encoding 'br'"),
    ("infer-header-length", "POST", "/v2/models/iris/infer",
     {"content": b"{}", "headers": {"inference-header-content-length": "x"}}, 400,
     "Inference-Header-Content-Length must be a non-negative integer"),
    ("infer-unknown-model", "POST", "/v2/models/other/infer", {"json": ROW}, 404,
     "unknown model 'other'"),
    ("infer-unknown-version", "POST", "/v2/models/iris/versions/9/infer", {"json": ROW}, 404,
     "no version '9'"),
    ("infer-too-large", "POST", "/v2/models/iris/infer", {"content": b" " * 70_000}, 413,
     "65536-byte limit"),
    ("feedback-bad-json", "POST", "/v2/models/iris/feedback", {"content": b"["}, 400,
     "request body is not valid JSON"),
    ("feedback-bad-shape", "POST", "/v2/models/iris/feedback", {"json": {"id": "a"}}, 400,
     "'label' must be a class index"),
    ("feedback-unknown-version", "POST", "/v2/models/iris/versions/9/feedback",
     {"json": {"id": "a", "label": 1}}, 404, "no version '9'"),
    ("feedback-too-large", "POST", "/v2/models/iris/feedback", {"content": b" " * 70_000}, 413,
     "65536-byte limit"),
    ("metadata-unknown-model", "GET", "/v2/models/other", {}, 404, "unknown model 'other'"),
    ("ready-unknown-version", "GET", "/v2/models/iris/versions/9/ready", {}, 404,
     "no version '9'"),
    ("no-route", "GET", "/v2/nothing/here", {}, 404, "no route GET /v2/nothing/here"),
    ("infer-by-get", "GET", "/v2/models/iris/infer", {}, 404, "no route GET"),
    ("wrong-method", "PUT", "/v2/models/iris", {}, 405,
     "method PUT not allowed on /v2/models/iris"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "method", "path", "kwargs", "status", "fragment"),
    READY_SERVER_ERRORS,
    ids=[c[0] for c in READY_SERVER_ERRORS],
)
def test_every_error_of_a_ready_server_has_the_v2_shape(
    mlp_server: Server,
    case: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    headers = {**kwargs.pop("headers", {}), "x-request-id": f"err-{case}"}
    r = httpx.request(method, mlp_server.url + path, headers=headers, timeout=30, **kwargs)
    assert_v2_error(r, status, fragment, f"err-{case}")


def test_a_wrong_method_says_which_methods_are_allowed(mlp_server: Server) -> None:
    r = httpx.put(f"{mlp_server.url}/v2/models/iris")
    assert r.status_code == 405
    assert "GET" in r.headers["allow"].split(", ")


@pytest.fixture
def loading_server(model_http: tuple[str, threading.Event], log_dir: Path) -> Iterator[str]:
    """A live server whose model download is held: every model route is 503 meanwhile."""
    base, _ = model_http
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = kanaria(
        "serve-model", "--model", f"{base}/m.onnx", "--name", MODEL_NAME, "--port", str(port)
    )
    with running(args, log_dir, "loading", ready_url=f"{url}/v2/health/live", timeout=90):
        yield url


def test_every_route_of_a_loading_server_answers_503_in_the_v2_shape(
    loading_server: str,
) -> None:
    for method, path, body in [
        ("GET", "/v2/health/ready", None),
        ("GET", "/v2/models/iris", None),
        ("GET", "/v2/models/iris/ready", None),
        ("POST", "/v2/models/iris/infer", ROW),
        ("POST", "/v2/models/iris/feedback", {"id": "a", "label": 1}),
    ]:
        r = httpx.request(
            method, loading_server + path, json=body, headers={"x-request-id": "loading"}
        )
        assert_v2_error(r, 503, "is not ready: loading and warming up", "loading")


def test_an_injected_fault_is_a_500_in_the_v2_shape(mlp_path: Path, log_dir: Path) -> None:
    with serve(mlp_path, log_dir, "--chaos-error-rate", "1") as server:
        r = httpx.post(server.infer_url(), json=ROW, headers={"x-request-id": "chaos"})
        assert_v2_error(r, 500, "injected failure (chaos_error_rate)", "chaos")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.BadRequestError("m"), 400),
        (errors.InferenceFailedError("m"), 400),
        (errors.NotFoundError("m"), 404),
        (errors.MethodNotAllowedError("m"), 405),
        (errors.PayloadTooLargeError("m"), 413),
        (errors.NotReadyError("m"), 503),
        (errors.InjectedFailureError("m"), 500),
    ],
)
def test_each_group_maps_to_its_status(error: errors.ServerError, status: int) -> None:
    """4xx: change the request; 503: retry it later or elsewhere; 500: not the caller's fault."""
    group = {4: errors.RequestError, 5: errors.InternalError}[status // 100]
    if status == 503:
        group = errors.UnavailableError
    assert isinstance(error, group)
    assert errors.answer(error) == errors.ErrorAnswer(status, b'{"error":"m"}')


def test_a_bug_is_a_500_naming_only_the_exception_type() -> None:
    answer = errors.answer(KeyError("secret internal detail"))
    assert answer.status == 500
    assert orjson.loads(answer.body) == {"error": "internal error: KeyError"}


def test_a_client_that_went_away_gets_no_body() -> None:
    assert errors.answer(errors.ClientGoneError()) == errors.ErrorAnswer(499, b"")


def test_the_v2_error_body_is_built_in_errors_py_only() -> None:
    """No other module of the server writes a dict with an "error" key: one shape, one place."""
    builders = []
    for path in sorted(SERVER_PACKAGE.glob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "error" for k in node.keys
            ):
                builders.append(f"{path.name}:{node.lineno}")
    assert builders == []
