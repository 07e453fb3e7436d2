"""Bearer tokens in the format users write them: a Secret's "one token per line".

Real router processes: tokens given in the environment (newlines, commas, blanks
and stray whitespace mixed) and in a tokens file that is rotated while the router
runs, as the kubelet rotates a mounted Secret.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kanaria_router.settings import RouterSettings
from kanaria_router.tokens import parse_tokens, presented_token

from tests.kanaria_router.conftest import Backend, RouterFactory, infer_body, routes
from tests.support import procs

MULTI_LINE = "alpha\n  beta  \r\n\n gamma,delta ,\n"
"""A Secret value as people write it: one per line, a Windows line end, a blank line,
indentation, and two comma-separated on one line."""


def status(client: httpx.Client, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.post("/v2/models/fraud/infer", json=infer_body(), headers=headers).status_code


def test_token_text_is_split_on_newlines_commas_and_whitespace() -> None:
    assert parse_tokens(MULTI_LINE) == ["alpha", "beta", "gamma", "delta"]
    assert parse_tokens("a,a\na") == ["a"]
    assert parse_tokens(" \n,\n") == []
    settings = RouterSettings(bearer_tokens=MULTI_LINE)
    assert [t.get_secret_value() for t in settings.bearer_tokens] == [
        "alpha",
        "beta",
        "gamma",
        "delta",
    ]


def test_presented_token_follows_the_configured_header() -> None:
    assert presented_token("Authorization", "Bearer abc ") == "abc"
    assert presented_token("authorization", "bearer abc") == "abc"
    assert presented_token("Authorization", "abc") is None  # the scheme is required there
    assert presented_token("Authorization", "Basic abc") is None
    assert presented_token("Authorization", "Bearer ") is None
    assert presented_token("X-Api-Key", " abc ") == "abc"
    assert presented_token("X-Api-Key", "Bearer abc") == "abc"
    assert presented_token("X-Api-Key", "") is None


def test_custom_auth_header_is_checked_and_not_forwarded(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    r = router(
        routes({"fraud": {"versions": {"v1": (shared_backends["v1"], 100)}}}),
        KANARIA_BEARER_TOKENS="alpha\nbeta\n",
        KANARIA_AUTH_HEADER="X-Api-Key",
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:

        def call(**headers: str) -> httpx.Response:
            return c.post("/v2/models/fraud/infer", json=infer_body(), headers=headers)

        assert call(**{"X-Api-Key": "beta"}).status_code == 200
        assert call(**{"X-Api-Key": "Bearer alpha"}).status_code == 200
        refused = call(Authorization="Bearer alpha")  # the other header does not count
        assert refused.status_code == 401
        assert "X-Api-Key: <token>" in refused.json()["error"]
    seen = {k.lower() for k in shared_backends["v1"].stats()["last_headers"]}
    assert "x-api-key" not in seen


def test_multi_line_token_value_accepts_each_token_and_refuses_others(
    router: RouterFactory, shared_backends: dict[str, Backend]
) -> None:
    r = router(
        routes({"fraud": {"versions": {"v1": (shared_backends["v1"], 100)}}}),
        KANARIA_BEARER_TOKENS=MULTI_LINE,
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert [status(c, t) for t in ("alpha", "beta", "gamma", "delta")] == [200] * 4
        for wrong in (None, "alphabeta", "gamma,delta", "alpha beta", "epsilon"):
            assert status(c, wrong) == 401, wrong


def test_tokens_file_is_reread_when_rotated(
    router: RouterFactory, shared_backends: dict[str, Backend], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("old-one\nold-two\n")
    r = router(
        routes({"fraud": {"versions": {"v1": (shared_backends["v1"], 100)}}}),
        KANARIA_BEARER_TOKENS="from-env",
        KANARIA_BEARER_TOKENS_FILE=str(tokens),
    )
    with httpx.Client(base_url=r.url, timeout=10) as c:
        assert [status(c, t) for t in ("old-one", "old-two", "from-env")] == [200] * 3
        assert status(c, "new-one") == 401
        # Rotate as the kubelet does: a new file swapped in atomically.
        staged = tmp_path / "tokens.new"
        staged.write_text("new-one\n")
        os.replace(staged, tokens)
        procs.wait_until(lambda: status(c, "new-one") == 200, 10, "the rotated token accepted")
        assert status(c, "old-one") == 401
        assert status(c, "from-env") == 200  # the environment's tokens stay
        # An emptied file closes the router to its tokens; it never opens it.
        staged.write_text("\n")
        os.replace(staged, tokens)
        procs.wait_until(lambda: status(c, "new-one") == 401, 10, "the emptied file applied")
        assert status(c, None) == 401
    assert "lists no tokens" in r.proc.output()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("\n \n", "lists no tokens")],
)
def test_router_refuses_to_start_without_usable_tokens_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text("models: {}\n")
    tokens = tmp_path / "tokens"
    if content is not None:
        tokens.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "kanaria_router", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KANARIA_BEARER_TOKENS_FILE": str(tokens)},
    )
    assert result.returncode == 2
    assert f"bearer tokens file {tokens} {message}" in result.stderr
    assert "Traceback" not in result.stderr
