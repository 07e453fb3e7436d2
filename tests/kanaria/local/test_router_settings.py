"""``spec.router.auth`` and ``spec.router.rateLimit`` under ``kanaria up``.

They are settings the router process starts with, so ``kanaria up`` passes them
as flags and restarts its router when an applied spec changes them.
"""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from tests.kanaria.local.harness import NAME, WIDTH, Up, build_models, canary, md
from tests.support.procs import kanaria, wait_until

pytestmark = pytest.mark.slow

BODY = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, WIDTH], "data": [0.5] * WIDTH}]
}


def _codes(up: Up, n: int, **headers: str) -> list[int]:
    with httpx.Client(base_url=up.url, timeout=10) as c:
        return [
            c.post(f"/v2/models/{NAME}/infer", json=BODY, headers=headers).status_code
            for _ in range(n)
        ]


def test_auth_and_rate_limit_apply_and_a_new_spec_restarts_the_router(up: Up) -> None:
    models = build_models(up.workdir / "models")
    tokens = up.workdir / "tokens.txt"
    tokens.write_text("s3cret\n")
    doc: dict[str, Any] = md("v1", models["v1"], canary({"setWeight": 50}))
    doc["spec"]["router"] = {
        "auth": {"tokensFile": "tokens.txt"},  # relative to the manifest's folder
        "rateLimit": {"requestsPerSecond": 0.01, "burst": 2},
    }
    up.start(doc)
    assert _codes(up, 1) == [401]
    assert _codes(up, 1, Authorization="Bearer wrong") == [401]
    assert _codes(up, 3, Authorization="Bearer s3cret") == [200, 200, 429]

    state = up.dir.load()
    assert state.router is not None
    before = state.router.pid
    doc["spec"]["router"] = {}
    up.apply(doc)

    def open_again() -> bool:
        try:
            return _codes(up, 1) == [200]
        except httpx.HTTPError:  # the moment the router restarts
            return False

    wait_until(open_again, 60, "the router to restart without auth")

    def recorded() -> bool:  # the state is saved at the end of the pass that restarted it
        router = up.dir.load().router
        return router is not None and router.pid != before

    wait_until(recorded, 30, "the new router in the state file")
    after = up.dir.load().router
    assert after is not None
    assert after.port == up.port
    assert _codes(up, 5) == [200] * 5  # and no rate limit either


def test_a_missing_tokens_file_is_refused_at_up(up: Up) -> None:
    models = build_models(up.workdir / "models")
    doc: dict[str, Any] = md("v1", models["v1"], canary({"setWeight": 50}))
    doc["spec"]["router"] = {"auth": {"tokensFile": "missing.txt"}}
    path = up.write(doc)
    result = subprocess.run(
        kanaria("up", "-f", str(path), "--state-dir", str(up.root), "--prometheus", "off"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "spec.router.auth.tokensFile" in result.stderr
    assert "missing.txt is not a file" in result.stderr
    assert "Traceback" not in result.stderr
