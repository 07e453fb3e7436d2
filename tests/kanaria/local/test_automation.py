"""Degrees of automation end to end under ``kanaria up`` (issue 13, the proof).

Real processes throughout: ``kanaria up`` with its model servers and router, the
embedded metric source, a review webhook on 127.0.0.1, a client stream whose true
labels are known (class 0 when x0 > x1), and a simulated reviewer that takes each
review case from the webhook, waits a while as a person would, and posts the true
label through the router's feedback API. The scenario itself
(tests/support/automation_stream.py) runs on real pods too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kanaria.local.harness import NAME, WIDTH, Up, md
from tests.kanaria.webhook_receiver import Receiver
from tests.support import automation_stream as auto
from tests.support.procs import kanaria

pytestmark = [pytest.mark.slow]


def document(version: str, uri: Path, webhook: str) -> dict[str, Any]:
    doc = md(version, uri, auto.RAMP, metrics=auto.GATES, inconclusiveLimit=100)
    doc["spec"]["automation"] = {**auto.POLICY, "review": {"webhook": webhook}}
    return doc


def webhook_cases(receiver: Receiver) -> auto.CaseSource:
    """The request ids of the review cases the webhook received since the last call."""
    seen = 0

    def new() -> list[str]:
        nonlocal seen
        bodies = receiver.bodies[seen:]
        seen += len(bodies)
        return [case["requestId"] for b in bodies for case in b["cases"]]

    return new


@pytest.fixture
def stream(up: Up, tmp_path: Path) -> Iterator[tuple[auto.Stream, Callable[[str, str], None]]]:
    models = auto.classifiers(tmp_path, WIDTH)
    with Receiver() as receiver:
        up.start(document("v1", models["good"], receiver.url))

        def apply(version: str, model: str) -> None:
            up.apply(document(version, models[model], receiver.url))

        s = auto.Stream(up.url, NAME, WIDTH, cases=webhook_cases(receiver)).start()
        try:
            yield s, apply
        finally:
            s.close()


def test_ramp_to_partial_then_a_sliced_model_moves_back(
    up: Up, stream: tuple[auto.Stream, Callable[[str, str], None]]
) -> None:
    s, apply = stream

    def wait(check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        return up.wait(what, check, 240)

    auto.ramps_to_partial(apply, wait, s, "v2")
    auto.sliced_model_moves_back(apply, wait, "v3")

    shown = up.command("status")
    assert shown.returncode == 0, shown.stderr
    assert "automation  assist on v3 (every answer reviewed)" in shown.stdout, shown.stdout
    assert "moved back 1x" in shown.stdout, shown.stdout
    png = up.workdir / "automation.png"
    report = subprocess.run(
        kanaria("report", NAME, "-o", str(png), "--state-dir", str(up.root)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    assert any(p.threshold.get("v3") == 1.0 for p in up.history())
    assert any(p.threshold.get("v2") == auto.FLOOR for p in up.history())
    assert png.stat().st_size > 0

    with s.lock:
        assert s.answered > 0
        assert s.failures == [], s.failures[:5]
