"""Behaviour under failure and change: dead and slow backends, auth, rate limits,
reloads (valid, invalid, under load) and graceful shutdown. Real processes only."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kanaria_router import errors
from kanaria_router.table import bucket_of

from tests.kanaria_router.conftest import (
    Backend,
    BackendFactory,
    RouterFactory,
    dead_backend,
    infer_body,
    routes,
)
from tests.support import procs


def infer(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/v2/models/fraud/infer", json=infer_body(), headers=headers)


def test_refused_connection_is_retried_on_another_weighted_version(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    dead = dead_backend("v2")
    r = router(
        routes({"fraud": {"versions": {"v1": (shared_backends["v1"], 50), "v2": (dead, 50)}}})
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        answers = [infer(c) for _ in range(40)]
    assert {a.status_code for a in answers} == {200}
    assert {a.headers["x-kanaria-version"] for a in answers} == {"v1"}
    assert "retrying on v1" in r.proc.output()
    # the refusing version is charged with a 503 per refused attempt, so its gates see it
    refused = r.metric("kanaria_router_requests_total", model="fraud", version="v2", code="503")
    assert refused > 0
    served = r.metric("kanaria_router_requests_total", model="fraud", version="v1", code="200")
    assert served == 40


@pytest.fixture
def stalled_backend() -> Iterator[Backend]:
    """A real socket on 127.0.0.1 that listens but never accepts, its one-slot accept
    queue already full: connection attempts time out, like a wedged server's."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        yield Backend("stalled", port, None)
    finally:
        filler.close()
        listener.close()


def test_a_version_timing_out_on_connect_is_ejected(
    router: RouterFactory, shared_backends: dict[str, Backend], stalled_backend: Backend
) -> None:
    live = shared_backends["v1"]
    r = router(
        routes({"fraud": {"versions": {"v1": (live, 50), "v2": (stalled_backend, 50)}}}),
        KANARIA_CONNECT_TIMEOUT_S="0.3",
        KANARIA_EJECT_S="600",
    )
    with httpx.Client(base_url=r.url, timeout=30) as c:
        answers = [infer(c) for _ in range(40)]
    assert {a.status_code for a in answers} == {200}
    assert {a.headers["x-kanaria-version"] for a in answers} == {"v1"}
    # one client paid the connect timeout; after it, v2 was skipped, not retried
    assert r.proc.output().count("connection timed out; weighted traffic skips it") == 1
    assert r.metric("kanaria_router_requests_total", version="v2", code="503") == 1


def test_all_backends_refusing_gives_503_with_a_v2_error(router: RouterFactory) -> None:
    r = router(
        routes(
            {
                "fraud": {
                    "versions": {"v1": (dead_backend("v1"), 60), "v2": (dead_backend("v2"), 40)}
                }
            }
        )
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        answer = infer(c)
    assert answer.status_code == 503
    assert "unreachable" in answer.json()["error"]
    assert len(answer.headers["x-request-id"]) == 32  # errors are traceable too
    assert r.metric("kanaria_router_requests_total", model="fraud", code="503") == 1


def test_backend_timeout_gives_504(router: RouterFactory, backend: BackendFactory) -> None:
    slow = backend("v1", "--hold")  # never answers until released
    r = router(
        routes({"fraud": {"versions": {"v1": (slow, 100)}}}), KANARIA_BACKEND_TIMEOUT_S="0.5"
    )
    with httpx.Client(base_url=r.url, timeout=30) as c:
        answer = infer(c)
    assert answer.status_code == 504
    assert "did not answer within 0.5s" in answer.json()["error"]
    assert answer.headers["x-kanaria-version"] == "v1"


def test_backend_errors_pass_through_unchanged(
    router: RouterFactory, backend: BackendFactory
) -> None:
    failing = backend("v1", "--status", "422")
    r = router(routes({"fraud": {"versions": {"v1": (failing, 100)}}}))
    with httpx.Client(base_url=r.url, timeout=10) as c:
        answer = infer(c)
    assert answer.status_code == 422
    assert answer.json() == {"error": "stub v1 fails"}
    assert r.metric("kanaria_router_requests_total", model="fraud", code="422") == 1


def test_bearer_tokens_and_rate_limit(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    r = router(
        routes({"fraud": {"versions": {"v1": (shared_backends["v1"], 100)}}}),
        KANARIA_BEARER_TOKENS="alpha, beta",
        KANARIA_RATE_LIMIT_RPS="0.01",
        KANARIA_RATE_LIMIT_BURST="3",
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        missing = infer(c)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert infer(c, Authorization="Bearer wrong").status_code == 401
        alpha = [infer(c, Authorization="Bearer alpha") for _ in range(4)]
        assert [a.status_code for a in alpha] == [200, 200, 200, 429]
        assert int(alpha[-1].headers["Retry-After"]) >= 1
        assert "rate limit" in alpha[-1].json()["error"]
        assert infer(c, Authorization="Bearer beta").status_code == 200  # its own bucket
        assert c.get("/v2/health/ready").status_code == 200  # probes need no token
        assert c.get("/metrics").status_code == 200
    # the router's token is not passed on to the model server
    assert "authorization" not in {k.lower() for k in shared_backends["v1"].stats()["last_headers"]}


def test_invalid_reload_is_rejected_and_old_routes_stay(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    r = router(routes({"fraud": {"versions": {"v1": (b["v1"], 100), "v2": (b["v2"], 0)}}}))
    r.write("models:\n  fraud:\n    versions:\n      v1: {url: 'http://127.0.0.1:1', weight: 30}\n")
    procs.wait_until(
        lambda: r.metric("kanaria_router_config_reloads_total", result="rejected") == 1,
        10,
        "the invalid document to be rejected",
    )
    assert "rejected, keeping the previous routes" in r.proc.output()
    assert "weights must sum to 100" in r.proc.output()
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert {infer(c).headers["x-kanaria-version"] for _ in range(10)} == {"v1"}
    # a later valid document applies again
    r.write(routes({"fraud": {"versions": {"v1": (b["v1"], 0), "v2": (b["v2"], 100)}}}))
    r.wait_weight("fraud", "v2", 100)
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert infer(c).headers["x-kanaria-version"] == "v2"


def test_reload_under_load_fails_no_request(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    b = shared_backends
    docs = [
        routes({"fraud": {"versions": {"v1": (b["v1"], 100 - w), "v2": (b["v2"], w)}}})
        for w in (0, 30, 70, 100)
    ] + [
        routes(
            {
                "fraud": {
                    "versions": {"v2": (b["v2"], 50), "v3": (b["v3"], 50)},
                    "mirror": {"version": "v2", "percent": 100},
                }
            }
        )
    ]
    r = router(docs[0])
    stop = threading.Event()
    codes: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    lock = threading.Lock()

    def load() -> None:
        with httpx.Client(base_url=r.url, timeout=30) as c:
            while not stop.is_set():
                answer = infer(c)
                with lock:
                    codes[answer.status_code] += 1
                    versions[answer.headers.get("x-kanaria-version", "?")] += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for i in range(10):
            r.write(docs[(i + 1) % len(docs)])
            target = sum(codes.values()) + 20

            def flowing(target: int = target, reloads: int = i + 2) -> bool:
                applied = r.metric("kanaria_router_config_reloads_total", result="applied")
                return applied >= reloads and sum(codes.values()) > target

            procs.wait_until(flowing, 30, "traffic to flow")
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert set(codes) == {200}, codes
    assert r.metric("kanaria_router_config_reloads_total", result="applied") == 11
    assert {"v1", "v2", "v3"} <= set(versions)


def test_graceful_shutdown_drains_in_flight_requests(
    router: RouterFactory, backend: BackendFactory
) -> None:
    held = backend("v1", "--hold")
    r = router(routes({"fraud": {"versions": {"v1": (held, 100)}}}))
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        with httpx.Client(base_url=r.url, timeout=30) as c:
            result["answer"] = infer(c)

    caller = threading.Thread(target=call)
    caller.start()
    procs.wait_until(lambda: held.stats()["received"] == 1, 10, "the request to reach the backend")
    r.proc.signal(signal.SIGTERM)
    procs.wait_until(lambda: "draining" in r.proc.output(), 10, "the router to start draining")
    assert r.proc.alive()
    held.release()
    caller.join(30)
    assert result["answer"].status_code == 200
    assert r.proc.popen.wait(30) == 0


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    def route(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kanaria_router", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {m: {versions: {v1: {url: 'http://a', weight: 50}}}}")
    cases = [
        ((), "give --config FILE or --configmap"),
        (("--config", str(tmp_path / "missing.yaml")), "does not exist"),
        (("--config", str(bad)), "weights must sum to 100"),
        (("--configmap", "no-slash"), "NAMESPACE/NAME"),
        (("--config", str(bad), "--port", "99999"), "port"),
    ]
    for args, message in cases:
        done = route(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_the_retry_table() -> None:
    """Retry only what the backend cannot have processed; eject only a wedged version."""
    table = errors.FORWARD_FAILURES
    assert set(table) == set(errors.ForwardFailure)
    rows = {kind: (r.retry, r.eject, r.error.status) for kind, r in table.items()}
    assert rows == {
        errors.ForwardFailure.REFUSED: (True, False, 503),
        errors.ForwardFailure.CONNECT_TIMEOUT: (True, True, 503),
        errors.ForwardFailure.TIMEOUT: (False, False, 504),
        errors.ForwardFailure.BROKEN: (False, False, 502),
    }


@pytest.fixture
def silent_backend() -> Iterator[Backend]:
    """A real socket that completes connections (the kernel's backlog) but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield Backend("silent", listener.getsockname()[1], None)
    finally:
        listener.close()


@pytest.fixture
def broken_backend() -> Iterator[Backend]:
    """A real socket server whose answers promise 100 bytes of body and send 9."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            with conn:
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 100\r\n\r\n{"outputs'
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Backend("broken", listener.getsockname()[1], None)
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)


@pytest.mark.parametrize(
    ("failing", "status", "retried", "message"),
    [
        ("dead", 200, True, ""),
        ("stalled", 200, True, ""),
        ("silent", 504, False, "version 'v1' of model 'fraud' did not answer within 0.5s"),
        ("broken", 502, False, "version 'v1' of model 'fraud' sent a broken answer"),
    ],
)
def test_each_kind_of_forward_failure_is_handled_as_the_table_says(
    router: RouterFactory,
    shared_backends: dict[str, Backend],
    request: pytest.FixtureRequest,
    failing: str,
    status: int,
    retried: bool,
    message: str,
) -> None:
    """The request's sticky key lands on v1, which fails in one way; v2 is where a retry goes."""
    bad = dead_backend("v1") if failing == "dead" else request.getfixturevalue(f"{failing}_backend")
    spare = shared_backends["v2"]
    r = router(
        routes(
            {
                "fraud": {
                    "versions": {"v1": (bad, 50), "v2": (spare, 50)},
                    "stickyKey": {"header": "x-user"},
                }
            }
        ),
        KANARIA_BACKEND_TIMEOUT_S="0.5",
        KANARIA_CONNECT_TIMEOUT_S="0.3",
    )
    user = next(f"u{i}" for i in range(1000) if bucket_of("fraud", f"u{i}") < 50)  # v1's half
    before = spare.stats()["received"]
    with httpx.Client(base_url=r.url, timeout=30) as c:
        answer = infer(c, **{"x-user": user})
    assert answer.status_code == status, answer.text
    assert spare.stats()["received"] - before == (1 if retried else 0)
    if retried:
        assert answer.headers["x-kanaria-version"] == "v2"
        assert "retrying on v2" in r.proc.output()
    else:
        assert list(answer.json()) == ["error"]
        assert answer.json()["error"].startswith(message)
        assert answer.headers["x-kanaria-version"] == "v1"
    ejected = "connection timed out; weighted traffic skips it" in r.proc.output()
    assert ejected == (failing == "stalled")
